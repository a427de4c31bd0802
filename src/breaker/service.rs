//! The layer, the service and the circuits they share.

use std::{
    collections::HashMap,
    fmt,
    marker::PhantomData,
    sync::{Arc, Mutex},
    task::{Context, Poll},
};

use http::Request;
use tokio::time::Instant;
use tower::{Layer, Service};

use super::{
    BreakerConfig, BreakerState, ClientSide, ConfigError, OnOpen, ResponseFuture, ServerSide,
    circuit::{Admission, Circuit, Transition},
};
use crate::classify::DefaultClassifier;

/// Applies [`Breaker`] to a service. See the [module docs](super).
///
/// `M` is what an open circuit answers ([`ServerSide`] or [`ClientSide`]), `C`
/// what counts as a failure. Every service the layer makes, and every clone,
/// shares the same circuits.
#[must_use]
pub struct BreakerLayer<M, C = DefaultClassifier> {
    shared: Arc<Shared>,
    classifier: C,
    _mode: PhantomData<fn() -> M>,
}

/// The circuits and their configuration.
pub(super) struct Shared {
    pub(super) config: BreakerConfig,
    pub(super) default: Arc<Circuit>,
    keyed: Mutex<HashMap<String, Arc<Circuit>>>,
}

impl BreakerLayer<ServerSide> {
    /// A breaker in front of a server's handlers: an open circuit answers 503.
    ///
    /// # Panics
    ///
    /// When `config` cannot work (see [`try_server`](Self::try_server)).
    pub fn server(config: BreakerConfig) -> Self {
        Self::try_server(config).unwrap_or_else(|err| panic!("{err}"))
    }

    /// A breaker in front of a server's handlers, or what is wrong with `config`.
    pub fn try_server(config: BreakerConfig) -> Result<Self, ConfigError> {
        Self::with_mode(config)
    }
}

impl BreakerLayer<ClientSide> {
    /// A breaker around a client: an open circuit fails the call with an
    /// `Overloaded` error.
    ///
    /// # Panics
    ///
    /// When `config` cannot work (see [`try_client`](Self::try_client)).
    pub fn client(config: BreakerConfig) -> Self {
        Self::try_client(config).unwrap_or_else(|err| panic!("{err}"))
    }

    /// A breaker around a client, or what is wrong with `config`.
    pub fn try_client(config: BreakerConfig) -> Result<Self, ConfigError> {
        Self::with_mode(config)
    }
}

impl<M> BreakerLayer<M> {
    fn with_mode(config: BreakerConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Self {
            shared: Arc::new(Shared {
                default: Arc::new(Circuit::new(&config)),
                keyed: Mutex::new(HashMap::new()),
                config,
            }),
            classifier: DefaultClassifier,
            _mode: PhantomData,
        })
    }
}

impl<M, C> BreakerLayer<M, C> {
    /// What counts as a failure (default [`DefaultClassifier`]). A call fails
    /// when the classification is transient, `Server`, `Internal` or `Panic`;
    /// `Client` (a 4xx) and `Cancelled` never count.
    pub fn classifier<C2>(self, classifier: C2) -> BreakerLayer<M, C2> {
        BreakerLayer {
            shared: self.shared,
            classifier,
            _mode: PhantomData,
        }
    }

    /// The state of the default circuit.
    pub fn state(&self) -> BreakerState {
        self.shared.default.state()
    }

    /// The state of the circuit of `key`; `None` when no request used that key yet.
    pub fn state_of(&self, key: &str) -> Option<BreakerState> {
        self.shared.state_of(key)
    }
}

impl<M, C: Clone> Clone for BreakerLayer<M, C> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
            classifier: self.classifier.clone(),
            _mode: PhantomData,
        }
    }
}

impl<M, C: fmt::Debug> fmt::Debug for BreakerLayer<M, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BreakerLayer")
            .field("config", &self.shared.config)
            .field("state", &self.state())
            .field("classifier", &self.classifier)
            .finish()
    }
}

impl<S, M, C: Clone> Layer<S> for BreakerLayer<M, C> {
    type Service = Breaker<S, M, C>;

    fn layer(&self, inner: S) -> Self::Service {
        Breaker {
            inner,
            shared: self.shared.clone(),
            classifier: self.classifier.clone(),
            _mode: PhantomData,
        }
    }
}

/// The service [`BreakerLayer`] produces. See the [module docs](super).
pub struct Breaker<S, M, C = DefaultClassifier> {
    inner: S,
    shared: Arc<Shared>,
    classifier: C,
    _mode: PhantomData<fn() -> M>,
}

impl<S, M, C> Breaker<S, M, C> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, unwrapped.
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// The state of the default circuit.
    pub fn state(&self) -> BreakerState {
        self.shared.default.state()
    }

    /// The state of the circuit of `key`; `None` when no request used that key yet.
    pub fn state_of(&self, key: &str) -> Option<BreakerState> {
        self.shared.state_of(key)
    }
}

impl<S: Clone, M, C: Clone> Clone for Breaker<S, M, C> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
            classifier: self.classifier.clone(),
            _mode: PhantomData,
        }
    }
}

impl<S: fmt::Debug, M, C> fmt::Debug for Breaker<S, M, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Breaker")
            .field("inner", &self.inner)
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}

impl<S, M, C, ReqBody, Res> Service<Request<ReqBody>> for Breaker<S, M, C>
where
    S: Service<Request<ReqBody>, Response = Res>,
    M: OnOpen<Res, S::Error>,
    C: crate::classify::Classifier<Res, S::Error> + Clone,
{
    type Response = M::Response;
    type Error = M::Error;
    type Future = ResponseFuture<S::Future, M, C>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // The inner service's readiness errors pass through as its call errors do.
        self.inner.poll_ready(cx).map(|r| match r {
            Ok(()) => Ok(()),
            Err(err) => M::pass(Err(err)).map(|_| ()),
        })
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let (circuit, key) = self.shared.circuit_for(&req);
        let (admission, transition) = circuit.admit(&self.shared.config);
        if let Some(transition) = transition {
            self.shared.report(key.as_deref(), transition);
        }
        match admission {
            Admission::Refused(retry_after) => {
                tracing::debug!(
                    key = key.as_deref().unwrap_or(""),
                    retry_after_ms = retry_after.as_millis() as u64,
                    "circuit breaker refused a call"
                );
                ResponseFuture::refused(retry_after)
            }
            Admission::Admitted(ticket) => ResponseFuture::called(
                self.inner.call(req),
                self.shared.clone(),
                circuit,
                key,
                ticket,
                Instant::now(),
                self.classifier.clone(),
            ),
        }
    }
}

impl Shared {
    fn circuit_for<B>(&self, req: &Request<B>) -> (Arc<Circuit>, Option<String>) {
        let Some(key_for) = &self.config.key else {
            return (self.default.clone(), None);
        };
        let Some(key) = key_for.key_for(req.method(), req.uri(), req.extensions()) else {
            return (self.default.clone(), None);
        };
        let mut keyed = self.keyed.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(circuit) = keyed.get(&key) {
            return (circuit.clone(), Some(key));
        }
        if keyed.len() >= self.config.max_keys {
            return (self.default.clone(), None);
        }
        let circuit = Arc::new(Circuit::new(&self.config));
        keyed.insert(key.clone(), circuit.clone());
        (circuit, Some(key))
    }

    fn state_of(&self, key: &str) -> Option<BreakerState> {
        let keyed = self.keyed.lock().unwrap_or_else(|p| p.into_inner());
        keyed.get(key).map(|c| c.state())
    }

    /// Logs a transition and calls the callback, outside the circuit's lock.
    pub(super) fn report(&self, key: Option<&str>, (from, to): Transition) {
        let key = key.unwrap_or("");
        if to == BreakerState::Open {
            tracing::warn!(
                key,
                from = from.as_str(),
                to = to.as_str(),
                "circuit breaker opened"
            );
        } else {
            tracing::info!(
                key,
                from = from.as_str(),
                to = to.as_str(),
                "circuit breaker state changed"
            );
        }
        #[cfg(feature = "metrics")]
        ::metrics::counter!(
            crate::metrics::BREAKER_TRANSITIONS,
            "from" => from.as_str(),
            "to" => to.as_str()
        )
        .increment(1);
        if let Some(callback) = &self.config.on_transition {
            callback.on_transition(key, from, to);
        }
    }
}
