//! [`ServiceBuilderExt`]: one method per steadfast layer on tower's
//! `ServiceBuilder`, as tower-http's `ServiceBuilderExt` has for its own.

use tower::{ServiceBuilder, layer::util::Stack};

/// Adds each steadfast layer to a [`ServiceBuilder`] by name, as tower-http's
/// `ServiceBuilderExt` does for tower-http's layers; each method exists with
/// its layer's feature.
///
/// A method takes what configures its layer — the [`RetryPolicy`](crate::retry::RetryPolicy),
/// the [`TimeoutTable`](crate::timeout::TimeoutTable), the
/// [`BreakerConfig`](crate::breaker::BreakerConfig), the
/// [`OverloadConfig`](crate::overload::OverloadConfig) — or, for the layers
/// configured on the layer itself (idempotency's store and scope, audit's
/// routes, hedge's delay), the layer. Each is exactly `.layer(TheLayer::new(…))`:
/// the stack built is the same type, and behaves the same. tower's own
/// `retry` and `timeout` keep their names; steadfast's are
/// [`retry_with`](Self::retry_with) and [`route_timeouts`](Self::route_timeouts).
///
/// ```
/// use std::{convert::Infallible, time::Duration};
/// use steadfast::{ServiceBuilderExt, retry::RetryPolicy, timeout::TimeoutTable};
/// use tower::{ServiceBuilder, ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let svc = ServiceBuilder::new()
///     .error_handler()
///     .route_timeouts(TimeoutTable::new(Duration::from_secs(10)))
///     .retry_with(RetryPolicy::new().max_retries(2))
///     .service(service_fn(|_req: http::Request<_>| async {
///         Ok::<_, Infallible>(http::Response::new(String::from("hello")))
///     }));
/// let req = http::Request::get("/").body(http_body_util::Empty::<bytes::Bytes>::new()).unwrap();
/// assert_eq!(svc.oneshot(req).await.unwrap().status(), 200);
/// # }
/// ```
pub trait ServiceBuilderExt<L>: sealed::Sealed<L> + Sized {
    /// Adds [`ErrorHandlerLayer::new`](crate::error_handler::ErrorHandlerLayer::new):
    /// every error, panic and bare error response as problem+json.
    #[cfg(feature = "error-handler")]
    #[cfg_attr(docsrs, doc(cfg(feature = "error-handler")))]
    fn error_handler(self) -> ServiceBuilder<Stack<crate::error_handler::ErrorHandlerLayer, L>>;

    /// Adds [`RetryLayer::new`](crate::retry::RetryLayer::new) with `policy`,
    /// for `http::Request<B>` clients.
    #[cfg(feature = "retry")]
    #[cfg_attr(docsrs, doc(cfg(feature = "retry")))]
    fn retry_with(
        self,
        policy: crate::retry::RetryPolicy,
    ) -> ServiceBuilder<Stack<crate::retry::RetryLayer, L>>;

    /// Adds an [`IdempotencyLayer`](crate::idempotency::IdempotencyLayer),
    /// configured (store, scope, limits) by its own setters.
    #[cfg(feature = "idempotency")]
    #[cfg_attr(docsrs, doc(cfg(feature = "idempotency")))]
    fn idempotency<St, Sc>(
        self,
        layer: crate::idempotency::IdempotencyLayer<St, Sc>,
    ) -> ServiceBuilder<Stack<crate::idempotency::IdempotencyLayer<St, Sc>, L>>;

    /// Adds [`RouteTimeoutLayer::new`](crate::timeout::RouteTimeoutLayer::new)
    /// with `table`.
    ///
    /// # Panics
    ///
    /// When a rule of `table` is invalid, as `RouteTimeoutLayer::new` does.
    #[cfg(feature = "timeout")]
    #[cfg_attr(docsrs, doc(cfg(feature = "timeout")))]
    fn route_timeouts(
        self,
        table: crate::timeout::TimeoutTable,
    ) -> ServiceBuilder<Stack<crate::timeout::RouteTimeoutLayer, L>>;

    /// Adds an [`AuditLayer`](crate::audit::AuditLayer), its routes configured
    /// by its own setters.
    #[cfg(feature = "audit")]
    #[cfg_attr(docsrs, doc(cfg(feature = "audit")))]
    fn audit(
        self,
        layer: crate::audit::AuditLayer,
    ) -> ServiceBuilder<Stack<crate::audit::AuditLayer, L>>;

    /// Adds [`BreakerLayer::server`](crate::breaker::BreakerLayer::server)
    /// with `config`: an open circuit answers 503.
    ///
    /// # Panics
    ///
    /// When `config` cannot work, as `BreakerLayer::server` does.
    #[cfg(feature = "breaker")]
    #[cfg_attr(docsrs, doc(cfg(feature = "breaker")))]
    fn server_breaker(
        self,
        config: crate::breaker::BreakerConfig,
    ) -> ServiceBuilder<Stack<crate::breaker::BreakerLayer<crate::breaker::ServerSide>, L>>;

    /// Adds [`BreakerLayer::client`](crate::breaker::BreakerLayer::client)
    /// with `config`: an open circuit fails the call.
    ///
    /// # Panics
    ///
    /// When `config` cannot work, as `BreakerLayer::client` does.
    #[cfg(feature = "breaker")]
    #[cfg_attr(docsrs, doc(cfg(feature = "breaker")))]
    fn client_breaker(
        self,
        config: crate::breaker::BreakerConfig,
    ) -> ServiceBuilder<Stack<crate::breaker::BreakerLayer<crate::breaker::ClientSide>, L>>;

    /// Adds a [`HedgeLayer`](crate::hedge::HedgeLayer) (made with its
    /// `fixed` or `percentile` constructor).
    #[cfg(feature = "hedge")]
    #[cfg_attr(docsrs, doc(cfg(feature = "hedge")))]
    fn hedge<C>(
        self,
        layer: crate::hedge::HedgeLayer<C>,
    ) -> ServiceBuilder<Stack<crate::hedge::HedgeLayer<C>, L>>;

    /// Adds [`OverloadLayer::new`](crate::overload::OverloadLayer::new) with `config`.
    ///
    /// # Panics
    ///
    /// When `config` cannot work, as `OverloadLayer::new` does.
    #[cfg(feature = "overload")]
    #[cfg_attr(docsrs, doc(cfg(feature = "overload")))]
    fn overload(
        self,
        config: crate::overload::OverloadConfig,
    ) -> ServiceBuilder<Stack<crate::overload::OverloadLayer, L>>;
}

impl<L> ServiceBuilderExt<L> for ServiceBuilder<L> {
    #[cfg(feature = "error-handler")]
    fn error_handler(self) -> ServiceBuilder<Stack<crate::error_handler::ErrorHandlerLayer, L>> {
        self.layer(crate::error_handler::ErrorHandlerLayer::new())
    }

    #[cfg(feature = "retry")]
    fn retry_with(
        self,
        policy: crate::retry::RetryPolicy,
    ) -> ServiceBuilder<Stack<crate::retry::RetryLayer, L>> {
        self.layer(crate::retry::RetryLayer::new(policy))
    }

    #[cfg(feature = "idempotency")]
    fn idempotency<St, Sc>(
        self,
        layer: crate::idempotency::IdempotencyLayer<St, Sc>,
    ) -> ServiceBuilder<Stack<crate::idempotency::IdempotencyLayer<St, Sc>, L>> {
        self.layer(layer)
    }

    #[cfg(feature = "timeout")]
    fn route_timeouts(
        self,
        table: crate::timeout::TimeoutTable,
    ) -> ServiceBuilder<Stack<crate::timeout::RouteTimeoutLayer, L>> {
        self.layer(crate::timeout::RouteTimeoutLayer::new(table))
    }

    #[cfg(feature = "audit")]
    fn audit(
        self,
        layer: crate::audit::AuditLayer,
    ) -> ServiceBuilder<Stack<crate::audit::AuditLayer, L>> {
        self.layer(layer)
    }

    #[cfg(feature = "breaker")]
    fn server_breaker(
        self,
        config: crate::breaker::BreakerConfig,
    ) -> ServiceBuilder<Stack<crate::breaker::BreakerLayer<crate::breaker::ServerSide>, L>> {
        self.layer(crate::breaker::BreakerLayer::server(config))
    }

    #[cfg(feature = "breaker")]
    fn client_breaker(
        self,
        config: crate::breaker::BreakerConfig,
    ) -> ServiceBuilder<Stack<crate::breaker::BreakerLayer<crate::breaker::ClientSide>, L>> {
        self.layer(crate::breaker::BreakerLayer::client(config))
    }

    #[cfg(feature = "hedge")]
    fn hedge<C>(
        self,
        layer: crate::hedge::HedgeLayer<C>,
    ) -> ServiceBuilder<Stack<crate::hedge::HedgeLayer<C>, L>> {
        self.layer(layer)
    }

    #[cfg(feature = "overload")]
    fn overload(
        self,
        config: crate::overload::OverloadConfig,
    ) -> ServiceBuilder<Stack<crate::overload::OverloadLayer, L>> {
        self.layer(crate::overload::OverloadLayer::new(config))
    }
}

mod sealed {
    /// Only tower's `ServiceBuilder` has these methods.
    pub trait Sealed<L> {}

    impl<L> Sealed<L> for tower::ServiceBuilder<L> {}
}
