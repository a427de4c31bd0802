//! How a request is sent more than once: cloned, or (HTTP) with its body buffered.

use std::{
    future::{Future, Ready},
    pin::Pin,
    task::{Context, Poll, Waker},
};

use std::convert::Infallible;

use bytes::Bytes;
use http::{
    Extensions, HeaderMap, HeaderName, HeaderValue, Method, Request, Uri, Version, request::Parts,
};
use http_body::{Body, Frame};

use super::{
    RetryBody, RetryIf,
    body::{BufferBody, Buffered, Done, Reading},
};
use crate::{BoxError, Deadline};

/// How the retry layer keeps a request to send it again: implemented by the
/// markers [`HttpReplay`] and [`CloneReplay`] only, and private to the crate, so
/// the response futures name neither it nor what it keeps.
pub(crate) trait Replay<Req> {
    /// The request the inner service receives.
    type Request;
    /// What is kept to send the request again.
    type Copy;
    /// Work before the first attempt: reading the rest of the body.
    type Prepare: Future;

    /// Splits a request into the first attempt (or the work needed first) and
    /// the copy for retries, written to `copy` (left `None` when the request
    /// cannot or need not be retried).
    fn start(
        request: Req,
        options: &HttpOptions,
        may_retry: bool,
        copy: &mut Option<Self::Copy>,
    ) -> Start<Self::Request, Self::Prepare>;

    /// The first attempt, once [`Prepare`](Replay::Prepare) is done; clears
    /// `copy` when the request turned out not to be replayable.
    fn prepared(
        output: <Self::Prepare as Future>::Output,
        copy: &mut Option<Self::Copy>,
    ) -> Result<Self::Request, BoxError>;

    /// The request for attempt `attempt` (2 for the first retry).
    fn replay(copy: &Self::Copy, attempt: u32, options: &HttpOptions) -> Self::Request;

    /// Whether the request may only be retried when it provably never left
    /// (a connect failure).
    fn connect_only(copy: &Self::Copy, options: &HttpOptions) -> bool;

    /// The request's own deadline, if it carries one.
    fn deadline(copy: &Self::Copy) -> Option<Deadline>;

    /// The request's own retry predicate, if it carries one.
    fn retry_if(copy: &Self::Copy) -> Option<&RetryIf>;
}

/// The first attempt of a request, or the work needed before it.
#[derive(Debug)]
pub(crate) enum Start<R, P> {
    /// The first attempt can be sent now.
    Ready(R),
    /// The body must be read first (it was not all there yet).
    Prepare(P),
    /// The request failed before it could be sent (its body failed).
    Failed(BoxError),
}

/// Retries any `Clone` request by cloning it before each attempt, as tower's
/// `Retry` does. Every request is taken as idempotent.
#[derive(Debug, Clone, Copy, Default)]
pub struct CloneReplay;

impl<Req: Clone> Replay<Req> for CloneReplay {
    type Request = Req;
    type Copy = Req;
    type Prepare = Ready<Infallible>;

    #[inline]
    fn start(
        request: Req,
        _: &HttpOptions,
        may_retry: bool,
        copy: &mut Option<Req>,
    ) -> Start<Req, Self::Prepare> {
        if may_retry {
            *copy = Some(request.clone());
        }
        Start::Ready(request)
    }

    fn prepared(output: Infallible, _: &mut Option<Req>) -> Result<Req, BoxError> {
        match output {}
    }

    fn replay(copy: &Req, _: u32, _: &HttpOptions) -> Req {
        copy.clone()
    }

    fn connect_only(_: &Req, _: &HttpOptions) -> bool {
        false
    }

    fn deadline(_: &Req) -> Option<Deadline> {
        None
    }

    fn retry_if(_: &Req) -> Option<&RetryIf> {
        None
    }
}

/// Retries `http::Request<B>`: keeps the head, buffers the body once (up to
/// [`max_body_bytes`](super::RetryLayer::max_body_bytes)) and replays it on
/// each attempt. See the [module docs](super) for the rules.
#[derive(Debug, Clone, Copy, Default)]
pub struct HttpReplay;

/// The request kept by [`HttpReplay`] for retries: its head, and its body and
/// trailers as read once.
#[derive(Debug, Clone)]
pub(crate) struct HttpCopy {
    method: Method,
    uri: Uri,
    version: Version,
    headers: HeaderMap,
    extensions: Extensions,
    pub(super) data: Option<Bytes>,
    pub(super) trailers: Option<Box<HeaderMap>>,
}

impl HttpCopy {
    /// A copy of a head whose body is still to be read.
    pub(super) fn head(parts: Parts) -> Self {
        Self {
            method: parts.method,
            uri: parts.uri,
            version: parts.version,
            headers: parts.headers,
            extensions: parts.extensions,
            data: None,
            trailers: None,
        }
    }

    /// The request with this head (moved, not cloned) and `body`.
    fn into_request<B>(self, body: B) -> Request<B> {
        let mut request = Request::new(body);
        *request.method_mut() = self.method;
        *request.uri_mut() = self.uri;
        *request.version_mut() = self.version;
        *request.headers_mut() = self.headers;
        *request.extensions_mut() = self.extensions;
        request
    }

    /// Clones the head of `request` (field by field: the request is not moved).
    #[inline(always)]
    fn of<B>(request: &Request<B>, data: Option<Bytes>, trailers: Option<Box<HeaderMap>>) -> Self {
        Self {
            method: request.method().clone(),
            uri: request.uri().clone(),
            version: request.version(),
            headers: request.headers().clone(),
            extensions: request.extensions().clone(),
            data,
            trailers,
        }
    }
}

impl<B> Replay<Request<B>> for HttpReplay
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Request = Request<RetryBody<B>>;
    type Copy = HttpCopy;
    type Prepare = BufferBody<B>;

    #[inline(always)]
    fn start(
        mut request: Request<B>,
        options: &HttpOptions,
        may_retry: bool,
        copy: &mut Option<HttpCopy>,
    ) -> Start<Self::Request, BufferBody<B>> {
        let never = request
            .extensions()
            .get::<RetryIf>()
            .is_some_and(RetryIf::is_never);
        if !may_retry || never {
            return Start::Ready(request.map(RetryBody::new));
        }
        if request.body().is_end_stream() {
            // Nothing to read: keep a copy of the head, send the request as it is.
            *copy = Some(HttpCopy::of(&request, None, None));
            return Start::Ready(request.map(RetryBody::new));
        }
        if request.body().size_hint().lower() > options.max_body_bytes as u64 {
            // Known to be too big: sent once, streamed, untouched.
            return Start::Ready(request.map(RetryBody::new));
        }
        // Most bodies are already whole (`Full`, a buffered `Incoming`): read
        // them now, so the first attempt starts here as it would without the
        // layer. A body that is not ready is read by the response future, which
        // polls it again with its own waker.
        let mut reading = Reading::new(options.max_body_bytes);
        let mut cx = Context::from_waker(Waker::noop());
        let read = match Pin::new(request.body_mut()).poll_frame(&mut cx) {
            Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                // The common case, the whole body in one frame: kept as it is.
                Ok(chunk)
                    if chunk.len() <= options.max_body_bytes && request.body().is_end_stream() =>
                {
                    let data = Some(chunk).filter(|chunk| !chunk.is_empty());
                    *copy = Some(HttpCopy::of(&request, data.clone(), None));
                    return Start::Ready(request.map(|_| RetryBody::replay(data, None)));
                }
                Ok(chunk) => reading.accept(Frame::data(chunk)),
                Err(frame) => reading.accept(frame),
            }
            .map_or_else(
                || reading.poll_read(request.body_mut(), &mut cx),
                |done| Poll::Ready(Ok(done)),
            ),
            Poll::Ready(Some(Err(err))) => Poll::Ready(Err(err)),
            Poll::Ready(None) => Poll::Ready(Ok(Done::Whole)),
            Poll::Pending => Poll::Pending,
        };
        match read {
            Poll::Ready(Ok(Done::Whole)) => {
                Start::Ready(first_attempt(request, reading, None, copy))
            }
            Poll::Ready(Ok(Done::TooBig(chunk))) => {
                Start::Ready(first_attempt(request, reading, Some(chunk), copy))
            }
            Poll::Ready(Err(err)) => Start::Failed(err.into()),
            Poll::Pending => {
                // The head waits in the copy while the future reads the body.
                let (parts, body) = request.into_parts();
                *copy = Some(HttpCopy::head(parts));
                Start::Prepare(BufferBody::new(body, reading))
            }
        }
    }

    fn prepared(
        output: Result<Buffered<B>, BoxError>,
        copy: &mut Option<HttpCopy>,
    ) -> Result<Self::Request, BoxError> {
        let head = copy.take().expect("a request being read keeps its head");
        let read = output?;
        let request = head.into_request(read.body);
        Ok(first_attempt(request, read.reading, read.overflow, copy))
    }

    fn replay(copy: &HttpCopy, attempt: u32, options: &HttpOptions) -> Self::Request {
        let body = RetryBody::replay(copy.data.clone(), copy.trailers.clone());
        let mut request = Request::new(body);
        *request.method_mut() = copy.method.clone();
        *request.uri_mut() = copy.uri.clone();
        *request.version_mut() = copy.version;
        *request.headers_mut() = copy.headers.clone();
        *request.extensions_mut() = copy.extensions.clone();
        request.extensions_mut().insert(Attempt(attempt));
        if let Some(name) = &options.attempt_header {
            request
                .headers_mut()
                .insert(name.clone(), HeaderValue::from(attempt));
        }
        request
    }

    fn connect_only(copy: &HttpCopy, options: &HttpOptions) -> bool {
        let idempotent = options.idempotent_methods.contains(&copy.method)
            || options
                .idempotency_key
                .as_ref()
                .is_some_and(|name| copy.headers.contains_key(name));
        !idempotent
    }

    fn deadline(copy: &HttpCopy) -> Option<Deadline> {
        Deadline::from_extensions(&copy.extensions)
    }

    fn retry_if(copy: &HttpCopy) -> Option<&RetryIf> {
        copy.extensions.get::<RetryIf>()
    }
}

/// The first attempt of a request whose body was read: replayed from memory
/// (and a copy kept in `copy`) when it fit, else what was read followed by the
/// rest of the stream.
#[inline(always)]
fn first_attempt<B: Body>(
    request: Request<B>,
    mut reading: Reading,
    overflow: Option<Bytes>,
    copy: &mut Option<HttpCopy>,
) -> Request<RetryBody<B>> {
    let data = reading.data();
    match overflow {
        None => {
            let trailers = reading.trailers();
            *copy = Some(HttpCopy::of(&request, data.clone(), trailers.clone()));
            request.map(|_| RetryBody::replay(data, trailers))
        }
        Some(chunk) => {
            *copy = None;
            request.map(|rest| RetryBody::prefixed(data, Some(chunk), rest))
        }
    }
}

/// The HTTP settings of a [`RetryLayer`](super::RetryLayer); set them with its methods.
#[derive(Debug, Clone)]
pub(crate) struct HttpOptions {
    pub(crate) max_body_bytes: usize,
    pub(crate) idempotent_methods: Vec<Method>,
    pub(crate) idempotency_key: Option<HeaderName>,
    pub(crate) attempt_header: Option<HeaderName>,
}

impl Default for HttpOptions {
    fn default() -> Self {
        Self {
            max_body_bytes: 64 * 1024,
            idempotent_methods: vec![
                Method::GET,
                Method::HEAD,
                Method::OPTIONS,
                Method::TRACE,
                Method::PUT,
                Method::DELETE,
            ],
            idempotency_key: Some(HeaderName::from_static("idempotency-key")),
            attempt_header: None,
        }
    }
}

/// Which attempt a request is, in its extensions: 1 for the first, 2 for the
/// first retry. The layer inserts it on retries only (so the first attempt
/// costs nothing); [`Attempt::of`] reads a missing one as the first.
///
/// ```
/// use steadfast::retry::Attempt;
///
/// let req = http::Request::new(());
/// assert_eq!(Attempt::of(req.extensions()), Attempt(1));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Attempt(pub u32);

impl Attempt {
    /// The attempt in `extensions`; [`Attempt(1)`](Attempt) when there is none.
    pub fn of(extensions: &http::Extensions) -> Attempt {
        extensions.get::<Attempt>().copied().unwrap_or(Attempt(1))
    }

    /// Whether this attempt is a retry.
    pub fn is_retry(&self) -> bool {
        self.0 > 1
    }
}
