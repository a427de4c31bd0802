//! [`IdempotencyBody`]: the body of the layer's responses, and [`PrefixedBody`]:
//! the inner body, with the bytes the layer already read put back.

use std::{
    pin::Pin,
    task::{Context, Poll},
};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project::pin_project;

/// The body of [`Idempotency`](super::Idempotency)'s responses: the inner body
/// untouched, the inner body with the frames the layer read put back in front,
/// or a body the layer wrote (a replay, a problem).
///
/// A response the layer does not store passes through as [`Inner`](Self::Inner),
/// with nothing wrapped around the inner body.
///
/// ```
/// use bytes::Bytes;
/// use http_body::Body;
/// use steadfast::idempotency::IdempotencyBody;
///
/// let body: IdempotencyBody<http_body_util::Empty<Bytes>> = IdempotencyBody::full(Bytes::from("{}"));
/// assert_eq!(body.size_hint().exact(), Some(2));
/// ```
#[pin_project(project = IdempotencyBodyProj)]
pub enum IdempotencyBody<B: Body> {
    /// The inner service's body, passed through.
    Inner(#[pin] B),
    /// The inner service's body after the layer tried and failed to store it:
    /// what it read, then the rest. Boxed: only such a response has it.
    Prefixed(Pin<Box<PrefixedBody<B>>>),
    /// A body the layer produced; `None` once it has been read.
    Full(Option<Bytes>),
}

impl<B: Body> IdempotencyBody<B> {
    /// A complete body.
    pub fn full(bytes: Bytes) -> Self {
        Self::Full((!bytes.is_empty()).then_some(bytes))
    }

    /// An empty body.
    pub fn empty() -> Self {
        Self::Full(None)
    }
}

impl<B: Body> From<Bytes> for IdempotencyBody<B> {
    fn from(bytes: Bytes) -> Self {
        Self::full(bytes)
    }
}

impl<B: Body> Default for IdempotencyBody<B> {
    fn default() -> Self {
        Self::empty()
    }
}

impl<B: Body> std::fmt::Debug for IdempotencyBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Inner(_) => f.write_str("IdempotencyBody::Inner(..)"),
            Self::Prefixed(body) => f
                .debug_tuple("IdempotencyBody::Prefixed")
                .field(body)
                .finish(),
            Self::Full(data) => f
                .debug_tuple("IdempotencyBody::Full")
                .field(&data.as_ref().map(Bytes::len))
                .finish(),
        }
    }
}

impl<B> Body for IdempotencyBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    #[inline]
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        match self.project() {
            IdempotencyBodyProj::Inner(body) => body.poll_frame(cx),
            IdempotencyBodyProj::Prefixed(body) => body.as_mut().poll_frame(cx),
            IdempotencyBodyProj::Full(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
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

/// The inner service's response body, with the frames the layer read from it
/// while trying to store it put back in front.
///
/// When the layer starts buffering a response and finds it larger than the
/// limit (or ending in trailers, or failing), the client still receives every
/// byte, and the error, in order.
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
    pub(crate) fn resumed(
        head: Bytes,
        next: Option<Result<Frame<Bytes>, B::Error>>,
        body: B,
    ) -> Self {
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

/// How buffering a response for the store ended.
pub(crate) enum Buffered<B: Body> {
    /// The whole body, within the limit.
    Complete(Bytes),
    /// Not storable; the body to send on, and why.
    Partial(IdempotencyBody<B>, Unstorable),
}

/// Why a response could not be stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unstorable {
    TooLarge,
    Trailers,
    Failed,
}

/// Reads `body` to its end if it fits in `limit` bytes and carries no trailers.
pub(crate) async fn buffer<B>(mut body: B, limit: usize) -> Buffered<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    use http_body_util::BodyExt;

    if body.size_hint().lower() > limit as u64 {
        return Buffered::Partial(IdempotencyBody::Inner(body), Unstorable::TooLarge);
    }
    let mut chunks = Chunks::default();
    loop {
        let (next, why) = match body.frame().await {
            None => return Buffered::Complete(chunks.into_bytes()),
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) if chunks.len + data.len() <= limit => {
                    chunks.push(data);
                    continue;
                }
                Ok(data) => (Ok(Frame::data(data)), Unstorable::TooLarge),
                Err(frame) => (Ok(frame), Unstorable::Trailers),
            },
            Some(Err(err)) => (Err(err), Unstorable::Failed),
        };
        let head = chunks.into_bytes();
        let body = PrefixedBody::resumed(head, Some(next), body);
        return Buffered::Partial(IdempotencyBody::Prefixed(Box::pin(body)), why);
    }
}

/// Data frames collected without copying the common single-frame body.
#[derive(Default)]
struct Chunks {
    first: Option<Bytes>,
    more: Option<bytes::BytesMut>,
    len: usize,
}

impl Chunks {
    fn push(&mut self, data: Bytes) {
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

    fn into_bytes(self) -> Bytes {
        match (self.first, self.more) {
            (_, Some(buf)) => buf.freeze(),
            (Some(first), None) => first,
            (None, None) => Bytes::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, StreamBody};

    type Frames = StreamBody<
        futures_util::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, std::io::Error>>>,
    >;

    fn frames(items: Vec<Result<Frame<Bytes>, std::io::Error>>) -> Frames {
        StreamBody::new(futures_util::stream::iter(items))
    }

    fn data(s: &'static str) -> Result<Frame<Bytes>, std::io::Error> {
        Ok(Frame::data(Bytes::from_static(s.as_bytes())))
    }

    #[tokio::test]
    async fn small_bodies_are_buffered_whole() {
        match buffer(frames(vec![data("ab"), data("cd"), data("e")]), 5).await {
            Buffered::Complete(b) => assert_eq!(b, "abcde"),
            Buffered::Partial(..) => panic!("fits"),
        }
    }

    #[tokio::test]
    async fn large_bodies_pass_on_every_byte() {
        let Buffered::Partial(body, why) =
            buffer(frames(vec![data("ab"), data("cd"), data("ef")]), 3).await
        else {
            panic!("too large")
        };
        assert_eq!(why, Unstorable::TooLarge);
        assert_eq!(body.collect().await.unwrap().to_bytes(), "abcdef");
    }

    #[tokio::test]
    async fn errors_and_trailers_reach_the_client() {
        let err = Err(std::io::Error::other("boom"));
        let Buffered::Partial(body, why) =
            buffer(frames(vec![data("ab"), err, data("x")]), 10).await
        else {
            panic!("failed")
        };
        assert_eq!(why, Unstorable::Failed);
        let mut body = std::pin::pin!(body);
        assert_eq!(
            body.frame().await.unwrap().unwrap().into_data().unwrap(),
            "ab"
        );
        assert!(body.frame().await.unwrap().is_err());
        assert!(body.frame().await.is_none(), "not polled after the error");

        let mut trailers = http::HeaderMap::new();
        trailers.insert("x-sum", "1".parse().unwrap());
        let Buffered::Partial(body, why) =
            buffer(frames(vec![data("ab"), Ok(Frame::trailers(trailers))]), 10).await
        else {
            panic!("trailers")
        };
        assert_eq!(why, Unstorable::Trailers);
        let collected = body.collect().await.unwrap();
        assert_eq!(collected.trailers().unwrap()["x-sum"], "1");
        assert_eq!(collected.to_bytes(), "ab");
    }
}
