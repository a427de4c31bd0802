//! [`Idempotency`]: the service.

use std::{
    sync::Arc,
    task::{Context, Poll},
};

use bytes::Bytes;
use http::{Request, Response, header};
use http_body::Body;
use tower::Service;

use super::{
    IDEMPOTENCY_KEY, IdempotencyKey, ResponseFuture, flow,
    future::ready,
    layer::Shared,
    problems,
    scope::{GlobalScope, Scope},
    store::{EntryKey, Store},
};
use crate::BoxError;
use crate::ResponseBody;

/// Deduplicates requests by their `Idempotency-Key`. See the [module docs](super).
///
/// The inner service must be `Clone` (the keyed path runs in its own future),
/// take a request body buildable from [`Bytes`] (the buffered body is handed on;
/// axum's `Body` is), and answer with an `Unpin` body (axum's is) so a response
/// can be buffered for the store and still be streamed on when it is too large.
pub struct Idempotency<S, St, Sc = GlobalScope> {
    inner: S,
    shared: Arc<Shared<St, Sc>>,
}

impl<S, St, Sc> Idempotency<S, St, Sc> {
    pub(crate) fn new(inner: S, shared: Arc<Shared<St, Sc>>) -> Self {
        Self { inner, shared }
    }

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
}

impl<S: Clone, St, Sc> Clone for Idempotency<S, St, Sc> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<S: std::fmt::Debug, St, Sc> std::fmt::Debug for Idempotency<S, St, Sc> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Idempotency")
            .field("inner", &self.inner)
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

impl<S, St, Sc, ReqBody, ResBody> Service<Request<ReqBody>> for Idempotency<S, St, Sc>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    St: Store,
    Sc: Scope,
    ReqBody: Body + From<Bytes> + Send + 'static,
    ReqBody::Data: Send,
    ReqBody::Error: Into<BoxError>,
    ResBody: Body<Data = Bytes> + Unpin + Send + 'static,
    ResBody::Error: Send + 'static,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        // The pass-through path, kept small enough to inline: a method the layer
        // does not deduplicate, or no key when none is required. The other path
        // is out of line and answers with one boxed future, so the pass-through
        // future is the inner one plus a discriminant.
        let config = &self.shared.config;
        if config.applies_to(req.method()) && (config.required || has_key_header(req.headers())) {
            return ResponseFuture::answered(self.call_keyed(req));
        }
        ResponseFuture::inner(self.inner.call(req))
    }
}

/// Whether `headers` holds an `Idempotency-Key`.
#[inline]
fn has_key_header(headers: &http::HeaderMap) -> bool {
    static NAME: http::HeaderName = IDEMPOTENCY_KEY;
    crate::headers::contains(headers, &NAME)
}

impl<S, St, Sc> Idempotency<S, St, Sc> {
    /// A request the layer may deduplicate: parse its key and run the keyed path.
    #[inline(never)]
    fn call_keyed<ReqBody, ResBody>(
        &mut self,
        req: Request<ReqBody>,
    ) -> flow::AnsweredFuture<ResBody, S::Error>
    where
        S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Send + 'static,
        St: Store,
        Sc: Scope,
        ReqBody: Body + From<Bytes> + Send + 'static,
        ReqBody::Data: Send,
        ReqBody::Error: Into<BoxError>,
        ResBody: Body<Data = Bytes> + Unpin + Send + 'static,
        ResBody::Error: Send + 'static,
    {
        let config = &self.shared.config;
        let key = match IdempotencyKey::from_headers(req.headers()) {
            Ok(Some(key)) => key,
            Ok(None) if config.required => {
                return ready(problems::missing_key(config));
            }
            // Not reached: without a required key, only a request carrying
            // one comes here. Pass it through all the same.
            Ok(None) => {
                let future = self.inner.call(req);
                return Box::pin(async move { future.await.map(flow::pass) });
            }
            Err(err) => return ready(problems::invalid_key(config, err)),
        };
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|len| len > config.max_request_bytes as u64) {
            return ready(problems::request_too_large(config));
        }
        let (parts, body) = req.into_parts();
        let Some(scope) = self.shared.scope.scope(&parts) else {
            return ready(problems::unscoped(config));
        };
        let entry = EntryKey::new(&scope, &key);
        // The keyed path runs later, in its own future: it takes the service that
        // poll_ready made ready and leaves a clone in its place.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(flow::keyed(self.shared.clone(), inner, parts, body, entry))
    }
}
