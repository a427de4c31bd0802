//! The keyed path of a request: buffer, fingerprint, claim, run, store.

use std::{future::Future, pin::Pin, sync::Arc, time::Duration};

use bytes::Bytes;
use http::{Request, Response, request::Parts};
use http_body::Body;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use tokio::time::Instant;
use tower::Service;

use super::{
    body::{Buffered, Unstorable, buffer},
    fingerprint::Fingerprint,
    guard::ClaimGuard,
    layer::{Config, OnStoreFailure, Shared},
    problems, replay,
    store::{Claim, Completion, Entry, EntryKey, Store, StoreError},
};
use crate::ResponseBody;
use crate::{BoxError, classify::error_chain};

/// A request the layer handles itself, boxed once: the keyed path, or an answer
/// given at once (see [`ready`](super::future::ready)).
pub(crate) type AnsweredFuture<B, E> =
    Pin<Box<dyn Future<Output = Result<Response<ResponseBody<B>>, E>> + Send>>;

/// The inner response, passed through.
#[inline]
pub(crate) fn pass<B: Body>(res: Response<B>) -> Response<ResponseBody<B>> {
    res.map(ResponseBody::Inner)
}

/// A store call bounded by the layer's store timeout.
async fn bounded<T>(
    timeout: Duration,
    call: impl Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    tokio::time::timeout(timeout, call)
        .await
        .unwrap_or_else(|_| Err(StoreError::timeout()))
}

/// Handles one request that carries a valid key in a known scope.
pub(crate) async fn keyed<S, St, Sc, ReqBody, ResBody>(
    shared: Arc<Shared<St, Sc>>,
    inner: S,
    parts: Parts,
    body: ReqBody,
    key: EntryKey,
) -> Result<Response<ResponseBody<ResBody>>, S::Error>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    St: Store,
    ReqBody: Body + From<Bytes>,
    ReqBody::Error: Into<BoxError>,
    ResBody: Body<Data = Bytes> + Unpin,
{
    let config = &shared.config;
    let store = &shared.store;

    let bytes = match Limited::new(body, config.max_request_bytes).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(err) if err.is::<LengthLimitError>() => return Ok(problems::request_too_large(config)),
        Err(err) => {
            tracing::debug!(error = %error_chain(&*err), "idempotency: request body unreadable");
            return Ok(problems::unreadable_body(config));
        }
    };
    let fingerprint = config.fingerprint.fingerprint(&parts, &bytes);
    let wait_until = config.wait.map(|max| Instant::now() + max);

    let lease = loop {
        let claim = bounded(
            config.store_timeout,
            store.claim(&key, &fingerprint, config.lock_ttl),
        )
        .await;
        let entry = match claim {
            Ok(Claim::Acquired(lease)) => {
                #[cfg(feature = "metrics")]
                ::metrics::counter!(crate::metrics::IDEMPOTENCY_CLAIMS).increment(1);
                break lease;
            }
            Ok(Claim::Existing(entry)) => entry,
            Err(err) => return store_failed(config, "claim", err, inner, parts, bytes).await,
        };
        // In wait mode, a duplicate of a request in flight waits for its outcome.
        let until = match &entry {
            Entry::InFlight {
                fingerprint: theirs,
                ..
            } if *theirs == fingerprint => wait_until.filter(|until| Instant::now() < *until),
            _ => None,
        };
        let entry = match until {
            None => entry,
            Some(until) => {
                let waited =
                    tokio::time::timeout_at(until + config.store_timeout, store.wait(&key, until))
                        .await
                        .unwrap_or_else(|_| Err(StoreError::timeout()));
                match waited {
                    // Released (the first failed) or its lock expired: claim it.
                    Ok(None) => continue,
                    Ok(Some(entry)) => entry,
                    Err(err) => {
                        return store_failed(config, "wait", err, inner, parts, bytes).await;
                    }
                }
            }
        };
        return Ok(duplicate(
            config,
            entry,
            &fingerprint,
            &key,
            route_template(&parts),
        ));
    };

    let guard = ClaimGuard::new(store, key, lease, config.store_timeout);
    run(
        config,
        guard,
        inner,
        Request::from_parts(parts, ReqBody::from(bytes)),
    )
    .await
}

/// The answer to a request whose key is taken.
fn duplicate<B: Body>(
    config: &Config,
    entry: Entry,
    fingerprint: &Fingerprint,
    key: &EntryKey,
    route: Option<&str>,
) -> Response<ResponseBody<B>> {
    match entry {
        Entry::InFlight {
            fingerprint: theirs,
            ..
        }
        | Entry::Completed {
            fingerprint: theirs,
            ..
        } if theirs != *fingerprint => {
            tracing::debug!(key = ?key, http.route = route, "idempotency: key reused for a different request");
            #[cfg(feature = "metrics")]
            ::metrics::counter!(crate::metrics::IDEMPOTENCY_MISMATCHES).increment(1);
            problems::key_reused(config)
        }
        Entry::InFlight { .. } => {
            #[cfg(feature = "metrics")]
            ::metrics::counter!(crate::metrics::IDEMPOTENCY_CONFLICTS, "reason" => "in_flight")
                .increment(1);
            problems::in_flight(config)
        }
        Entry::Completed {
            completion: Completion::Response(stored),
            ..
        } => {
            tracing::debug!(key = ?key, http.route = route, status = stored.status.as_u16(), "idempotency: replaying");
            #[cfg(feature = "metrics")]
            ::metrics::counter!(crate::metrics::IDEMPOTENCY_REPLAYS).increment(1);
            replay::replay(stored)
        }
        Entry::Completed {
            completion: Completion::NotStored { status },
            ..
        } => {
            #[cfg(feature = "metrics")]
            ::metrics::counter!(crate::metrics::IDEMPOTENCY_CONFLICTS, "reason" => "not_stored")
                .increment(1);
            problems::not_stored(config, status)
        }
    }
}

/// Runs the handler under the claim and stores what it answered.
async fn run<S, St, ReqBody, ResBody>(
    config: &Config,
    guard: ClaimGuard<'_, St>,
    mut inner: S,
    req: Request<ReqBody>,
) -> Result<Response<ResponseBody<ResBody>>, S::Error>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    St: Store,
    ResBody: Body<Data = Bytes> + Unpin,
{
    let res = match inner.call(req).await {
        Ok(res) => res,
        Err(err) => {
            guard.release().await;
            return Err(err);
        }
    };
    if !config.store_if.store(res.status()) {
        guard.release().await;
        return Ok(pass(res));
    }
    let (parts, body) = res.into_parts();
    match buffer(body, config.max_response_bytes).await {
        Buffered::Complete(bytes) => {
            let stored = replay::to_stored(&parts, bytes.clone());
            guard
                .complete(Completion::Response(stored), config.retention)
                .await;
            Ok(Response::from_parts(parts, ResponseBody::full(bytes)))
        }
        Buffered::Partial(body, Unstorable::Failed) => {
            // The response failed mid-body: the client did not get it either.
            guard.release().await;
            Ok(Response::from_parts(parts, body))
        }
        Buffered::Partial(body, why) => {
            tracing::warn!(
                status = parts.status.as_u16(),
                reason = ?why,
                "idempotency: response not storable; its duplicates will be answered 409"
            );
            let completion = Completion::NotStored {
                status: parts.status,
            };
            guard.complete(completion, config.retention).await;
            Ok(Response::from_parts(parts, body))
        }
    }
}

/// The store failed: 503, or the handler without deduplication.
async fn store_failed<S, ReqBody, ResBody>(
    config: &Config,
    operation: &'static str,
    err: StoreError,
    mut inner: S,
    parts: Parts,
    bytes: Bytes,
) -> Result<Response<ResponseBody<ResBody>>, S::Error>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ReqBody: From<Bytes>,
    ResBody: Body,
{
    count_store_error(operation);
    let route = route_template(&parts);
    match config.on_store_failure {
        OnStoreFailure::FailClosed => {
            tracing::error!(operation, http.route = route, error = %error_chain(&err), "idempotency: store failed; answering 503");
            Ok(problems::store_unavailable(config))
        }
        OnStoreFailure::FailOpen => {
            tracing::warn!(operation, http.route = route, error = %error_chain(&err), "idempotency: store failed; running the request without deduplication");
            let res = inner
                .call(Request::from_parts(parts, ReqBody::from(bytes)))
                .await?;
            Ok(pass(res))
        }
    }
}

/// A failed store call (`operation`: claim, wait, complete, release) in the metrics.
#[inline]
pub(crate) fn count_store_error(operation: &'static str) {
    #[cfg(feature = "metrics")]
    ::metrics::counter!(crate::metrics::IDEMPOTENCY_STORE_ERRORS, "operation" => operation)
        .increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = operation;
}

/// The route template, for `http.route` in the logs: axum's `MatchedPath` when
/// the layer runs inside a `Router`; never the request's own path, which may
/// carry ids.
fn route_template(parts: &Parts) -> Option<&str> {
    #[cfg(feature = "axum")]
    if let Some(matched) = parts.extensions.get::<axum::extract::MatchedPath>() {
        return Some(matched.as_str());
    }
    #[cfg(not(feature = "axum"))]
    let _ = parts;
    None
}
