//! The body of steadfast's responses, and what the layers that read a body
//! before passing it on share.
//!
//! [`ResponseBody`] is the inner service's body untouched, the inner body with
//! the frames a layer read from it put back in front ([`PrefixedBody`]), or
//! bytes the layer wrote itself (a problem document, a replayed response). One
//! enum instead of a boxed body keeps the success path free of allocation: the
//! inner body passes through as itself.

use std::{
    pin::Pin,
    task::{Context, Poll},
};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project::pin_project;

/// A response body that is the inner service's, the inner service's with the
/// bytes a layer already read put back in front, or a complete buffer.
///
/// ```
/// use steadfast::ResponseBody;
/// use http_body::Body;
/// use bytes::Bytes;
///
/// let body: ResponseBody<http_body_util::Empty<Bytes>> = ResponseBody::full(Bytes::from("{}"));
/// assert_eq!(body.size_hint().exact(), Some(2));
/// ```
#[pin_project(project = ResponseBodyProj)]
pub enum ResponseBody<B: Body> {
    /// The inner service's body, passed through.
    Inner(#[pin] B),
    /// The inner service's body after a layer read some of it (and could not
    /// keep it): what it read, then the rest. Boxed: only such a response has it.
    Prefixed(Pin<Box<PrefixedBody<B>>>),
    /// A body the layer produced; `None` once it has been read.
    Full(Option<Bytes>),
}

impl<B: Body> ResponseBody<B> {
    /// Wraps the inner service's body.
    pub fn inner(body: B) -> Self {
        Self::Inner(body)
    }

    /// A complete body.
    pub fn full(bytes: Bytes) -> Self {
        Self::Full((!bytes.is_empty()).then_some(bytes))
    }

    /// An empty body.
    pub fn empty() -> Self {
        Self::Full(None)
    }

    /// The inner body with `body`'s prefix in front.
    pub fn prefixed(body: PrefixedBody<B>) -> Self {
        Self::Prefixed(Box::pin(body))
    }
}

impl<B: Body> From<Bytes> for ResponseBody<B> {
    fn from(bytes: Bytes) -> Self {
        Self::full(bytes)
    }
}

impl<B: Body> Default for ResponseBody<B> {
    fn default() -> Self {
        Self::empty()
    }
}

impl<B: Body> std::fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Inner(_) => f.write_str("ResponseBody::Inner(..)"),
            Self::Prefixed(body) => f.debug_tuple("ResponseBody::Prefixed").field(body).finish(),
            Self::Full(data) => f
                .debug_tuple("ResponseBody::Full")
                .field(&data.as_ref().map(Bytes::len))
                .finish(),
        }
    }
}

impl<B> Body for ResponseBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    #[inline]
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        match self.project() {
            ResponseBodyProj::Inner(body) => body.poll_frame(cx),
            ResponseBodyProj::Prefixed(body) => body.as_mut().poll_frame(cx),
            ResponseBodyProj::Full(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
        }
    }

    #[inline]
    fn is_end_stream(&self) -> bool {
        match self {
            Self::Inner(body) => body.is_end_stream(),
            Self::Prefixed(body) => body.is_end_stream(),
            Self::Full(data) => data.is_none(),
        }
    }

    #[inline]
    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Inner(body) => body.size_hint(),
            Self::Prefixed(body) => body.size_hint(),
            Self::Full(data) => SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64)),
        }
    }
}

/// A body with the bytes a layer already read from it put back in front: the
/// data read, then the frame that stopped the reading (a chunk over a limit,
/// trailers, or the error), then the rest.
///
/// When a layer starts buffering a body and finds it larger than its limit (or
/// ending in trailers, or failing), the receiver still gets every byte, and the
/// error, in order: the idempotency layer for a response it cannot store, the
/// retry layer for a request too large to replay.
#[pin_project]
pub struct PrefixedBody<B: Body> {
    /// The data read before the frame that stopped buffering.
    head: Option<Bytes>,
    /// The frame that stopped buffering (too large, trailers, or the error).
    next: Option<Result<Frame<Bytes>, B::Error>>,
    /// The body failed: it is not polled again.
    failed: bool,
    #[pin]
    rest: B,
}

impl<B: Body> std::fmt::Debug for PrefixedBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrefixedBody")
            .field("head", &self.head.as_ref().map(Bytes::len))
            .finish_non_exhaustive()
    }
}

impl<B: Body> PrefixedBody<B> {
    /// The inner body, with nothing in front.
    pub fn new(body: B) -> Self {
        Self {
            head: None,
            next: None,
            failed: false,
            rest: body,
        }
    }

    /// `head`, then the frame `next` that was read after it, then the rest of `body`.
    pub fn resumed(head: Bytes, next: Option<Result<Frame<Bytes>, B::Error>>, body: B) -> Self {
        Self {
            head: (!head.is_empty()).then_some(head),
            next,
            failed: false,
            rest: body,
        }
    }
}

impl<B> Body for PrefixedBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.project();
        if let Some(head) = this.head.take() {
            return Poll::Ready(Some(Ok(Frame::data(head))));
        }
        if let Some(next) = this.next.take() {
            // A body is not polled again after it failed.
            *this.failed = next.is_err();
            return Poll::Ready(Some(next));
        }
        if *this.failed {
            return Poll::Ready(None);
        }
        this.rest.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.head.is_none() && self.next.is_none() && (self.failed || self.rest.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        let buffered = self.head.as_ref().map_or(0, Bytes::len) as u64
            + match &self.next {
                Some(Ok(frame)) => frame.data_ref().map_or(0, Bytes::len) as u64,
                _ => 0,
            };
        if self.failed {
            return SizeHint::with_exact(buffered);
        }
        let rest = self.rest.size_hint();
        let mut hint = SizeHint::new();
        hint.set_lower(rest.lower().saturating_add(buffered));
        if let Some(upper) = rest.upper() {
            hint.set_upper(upper.saturating_add(buffered));
        }
        hint
    }
}

/// Data frames collected without copying the common single-frame body.
#[cfg(any(feature = "retry", feature = "idempotency"))]
#[derive(Debug, Default)]
pub(crate) struct Chunks {
    first: Option<Bytes>,
    more: Option<bytes::BytesMut>,
    len: usize,
}

#[cfg(any(feature = "retry", feature = "idempotency"))]
impl Chunks {
    #[cfg(feature = "idempotency")]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn push(&mut self, data: Bytes) {
        self.len += data.len();
        match (&mut self.first, &mut self.more) {
            (None, None) => self.first = Some(data),
            (Some(first), more @ None) => {
                let mut buf = bytes::BytesMut::with_capacity(first.len() + data.len());
                buf.extend_from_slice(first);
                buf.extend_from_slice(&data);
                self.first = None;
                *more = Some(buf);
            }
            (_, Some(buf)) => buf.extend_from_slice(&data),
        }
    }

    pub(crate) fn into_bytes(self) -> Bytes {
        match (self.first, self.more) {
            (_, Some(buf)) => buf.freeze(),
            (Some(first), None) => first,
            (None, None) => Bytes::new(),
        }
    }
}
