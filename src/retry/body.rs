//! The request body the inner service sees, and reading a body once to replay it.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll, ready},
};

use bytes::Bytes;
use http::HeaderMap;

use http_body::{Body, Frame, SizeHint};
use pin_project::pin_project;

use crate::{
    BoxError,
    body::{Chunks, PrefixedBody, ResponseBody},
};

/// The request body the inner service receives from an HTTP
/// [`RetryLayer`](super::RetryLayer): the buffered bytes, replayed on each
/// attempt, or the original body streamed through (after whatever prefix was
/// read before it proved too big to buffer).
///
/// One type for both keeps the inner service monomorphic and allocation-free.
///
/// ```
/// use steadfast::retry::RetryBody;
/// use http_body::Body;
/// use http_body_util::Empty;
/// use bytes::Bytes;
///
/// let body: RetryBody<Empty<Bytes>> = RetryBody::full(Bytes::from_static(b"{}"));
/// assert_eq!(body.size_hint().exact(), Some(2));
/// ```
#[pin_project]
pub struct RetryBody<B: Body> {
    #[pin]
    kind: Kind<B>,
}

#[pin_project(project = KindProj)]
enum Kind<B: Body> {
    Replay {
        data: Option<Bytes>,
        trailers: Option<Box<HeaderMap>>,
    },
    /// The original body, possibly after the prefix read before it proved too
    /// big to buffer (steadfast's one "bytes already read, then the rest" body).
    Stream(#[pin] ResponseBody<B>),
}

impl<B: Body> std::fmt::Debug for RetryBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.kind {
            Kind::Replay { data, trailers } => f
                .debug_struct("RetryBody::Replay")
                .field("len", &data.as_ref().map_or(0, Bytes::len))
                .field("trailers", &trailers.is_some())
                .finish(),
            Kind::Stream(body) => f.debug_tuple("RetryBody::Stream").field(body).finish(),
        }
    }
}

impl<B: Body> RetryBody<B> {
    /// The original body, streamed through untouched.
    #[inline]
    pub fn new(body: B) -> Self {
        Self {
            kind: Kind::Stream(ResponseBody::Inner(body)),
        }
    }

    /// A complete body.
    pub fn full(data: Bytes) -> Self {
        Self::replay(Some(data), None)
    }

    /// An empty body.
    pub fn empty() -> Self {
        Self::replay(None, None)
    }

    #[inline]
    pub(super) fn replay(data: Option<Bytes>, trailers: Option<Box<HeaderMap>>) -> Self {
        Self {
            kind: Kind::Replay {
                data: data.filter(|d| !d.is_empty()),
                trailers,
            },
        }
    }

    /// `first`, then `second`, then the rest of `body`.
    #[inline]
    pub(super) fn prefixed(first: Option<Bytes>, second: Option<Bytes>, body: B) -> Self {
        let next = second.filter(|d| !d.is_empty()).map(|d| Ok(Frame::data(d)));
        let first = first.unwrap_or_default();
        let body = if first.is_empty() && next.is_none() {
            ResponseBody::Inner(body)
        } else {
            ResponseBody::prefixed(PrefixedBody::resumed(first, next, body))
        };
        Self {
            kind: Kind::Stream(body),
        }
    }

    /// Whether this body is replayed from memory (rather than streamed).
    pub fn is_replayed(&self) -> bool {
        matches!(self.kind, Kind::Replay { .. })
    }
}

impl<B> Body for RetryBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        match self.project().kind.project() {
            KindProj::Replay { data, trailers } => Poll::Ready(
                data.take()
                    .map(Frame::data)
                    .or_else(|| trailers.take().map(|t| Frame::trailers(*t)))
                    .map(Ok),
            ),
            KindProj::Stream(body) => body.poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Replay { data, trailers } => data.is_none() && trailers.is_none(),
            Kind::Stream(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Replay { data, .. } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            Kind::Stream(body) => body.size_hint(),
        }
    }
}

/// Reads a body frame by frame, keeping what it read, up to a limit.
#[derive(Debug)]
pub(super) struct Reading {
    chunks: Chunks,
    /// Every data byte seen, the one over the limit included.
    len: usize,
    limit: usize,
    trailers: Option<Box<HeaderMap>>,
}

/// How reading a body ended.
pub(super) enum Done {
    /// The body ended within the limit.
    Whole,
    /// This chunk took the body over the limit.
    TooBig(Bytes),
}

impl Reading {
    #[inline]
    pub(super) fn new(limit: usize) -> Self {
        Self {
            chunks: Chunks::default(),
            len: 0,
            limit,
            trailers: None,
        }
    }

    /// Reads `body` until it ends, overflows, fails or is not ready.
    #[inline]
    pub(super) fn poll_read<B>(
        &mut self,
        body: &mut B,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Done, B::Error>>
    where
        B: Body<Data = Bytes> + Unpin,
    {
        loop {
            if body.is_end_stream() {
                return Poll::Ready(Ok(Done::Whole));
            }
            match ready!(Pin::new(&mut *body).poll_frame(cx)) {
                None => return Poll::Ready(Ok(Done::Whole)),
                Some(Err(err)) => return Poll::Ready(Err(err)),
                Some(Ok(frame)) => {
                    if let Some(done) = self.accept(frame) {
                        return Poll::Ready(Ok(done));
                    }
                }
            }
        }
    }

    /// Keeps one frame; `Some` when it took the body over the limit.
    #[inline]
    pub(super) fn accept(&mut self, frame: Frame<Bytes>) -> Option<Done> {
        match frame.into_data() {
            Ok(chunk) if chunk.is_empty() => {}
            Ok(chunk) => {
                self.len = self.len.saturating_add(chunk.len());
                if self.len > self.limit {
                    return Some(Done::TooBig(chunk));
                }
                self.push(chunk);
            }
            Err(frame) => {
                if let Ok(trailers) = frame.into_trailers() {
                    match &mut self.trailers {
                        Some(existing) => existing.extend(trailers),
                        None => self.trailers = Some(Box::new(trailers)),
                    }
                }
            }
        }
        None
    }

    #[inline]
    fn push(&mut self, chunk: Bytes) {
        self.chunks.push(chunk);
    }

    /// What was read, as one buffer.
    #[inline]
    pub(super) fn data(&mut self) -> Option<Bytes> {
        Some(std::mem::take(&mut self.chunks).into_bytes()).filter(|data| !data.is_empty())
    }

    /// The trailers read, if any.
    #[inline]
    pub(super) fn trailers(&mut self) -> Option<Box<HeaderMap>> {
        self.trailers.take()
    }
}

/// Reads the rest of a request body into memory, up to a limit, when it was
/// not all there when the request was called.
///
/// It resolves to the whole body (to replay on every attempt) or, when the body
/// turns out to be over the limit, to what was read and the rest of the
/// stream, to be sent once. The body is never truncated and never held whole
/// once it proves too big.
#[derive(Debug)]
pub(crate) struct BufferBody<B> {
    body: Option<B>,
    reading: Reading,
}

/// What [`BufferBody`] read: the body, and its whole content or a prefix.
#[derive(Debug)]
pub(crate) struct Buffered<B> {
    pub(super) body: B,
    pub(super) reading: Reading,
    pub(super) overflow: Option<Bytes>,
}

impl<B> BufferBody<B> {
    pub(super) fn new(body: B, reading: Reading) -> Self {
        Self {
            body: Some(body),
            reading,
        }
    }
}

impl<B> Future for BufferBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Output = Result<Buffered<B>, BoxError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let body = this
            .body
            .as_mut()
            .expect("BufferBody polled after completion");
        let done = ready!(this.reading.poll_read(body, cx));
        let body = this.body.take().expect("checked above");
        let overflow = match done.map_err(Into::into)? {
            Done::Whole => None,
            Done::TooBig(chunk) => Some(chunk),
        };
        let reading = std::mem::replace(&mut this.reading, Reading::new(0));
        Poll::Ready(Ok(Buffered {
            body,
            reading,
            overflow,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::stream;
    use http::{Request, request::Parts};
    use http_body_util::{BodyExt, Full, StreamBody};
    use std::convert::Infallible;

    type Chunks = StreamBody<stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, Infallible>>>>;

    fn chunks(parts: &[&'static [u8]], trailers: Option<HeaderMap>) -> Chunks {
        let mut frames: Vec<_> = parts
            .iter()
            .map(|p| Ok(Frame::data(Bytes::from_static(p))))
            .collect();
        if let Some(t) = trailers {
            frames.push(Ok(Frame::trailers(t)));
        }
        StreamBody::new(stream::iter(frames))
    }

    fn parts() -> Parts {
        Request::post("/").body(()).unwrap().into_parts().0
    }

    type Kept = Option<(Option<Bytes>, Option<Box<HeaderMap>>)>;

    /// Reads `body` as the layer does when it is not ready at once.
    async fn buffer<B>(body: B, limit: usize) -> Result<(Request<RetryBody<B>>, Kept), BoxError>
    where
        B: Body<Data = Bytes> + Unpin,
        B::Error: Into<BoxError>,
    {
        use crate::retry::{
            HttpReplay,
            replay::{HttpCopy, Replay},
        };
        let read = BufferBody::new(body, Reading::new(limit)).await;
        let mut copy = Some(HttpCopy::head(parts()));
        let req = <HttpReplay as Replay<Request<B>>>::prepared(read, &mut copy)?;
        Ok((req, copy.map(|c| (c.data, c.trailers))))
    }

    async fn read<B: Body<Data = Bytes>>(body: B) -> (Bytes, Option<HeaderMap>)
    where
        B::Error: std::fmt::Debug,
    {
        let collected = body.collect().await.unwrap();
        let trailers = collected.trailers().cloned();
        (collected.to_bytes(), trailers)
    }

    #[tokio::test]
    async fn a_single_chunk_is_kept_without_copying() {
        let data = Bytes::from_static(b"hello");
        let (req, kept) = buffer(Full::new(data.clone()), 10).await.unwrap();
        let kept = kept.expect("small bodies are replayable").0.unwrap();
        assert_eq!(kept.as_ptr(), data.as_ptr(), "same allocation");
        assert!(req.body().is_replayed());
        assert_eq!(read(req.into_body()).await.0, "hello");
    }

    #[tokio::test]
    async fn chunks_and_trailers_are_replayed() {
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", "0".parse().unwrap());
        let body = chunks(&[b"ab", b"", b"cd", b"e"], Some(trailers.clone()));
        let (req, kept) = buffer(body, 5).await.unwrap();
        let (data, kept_trailers) = kept.unwrap();
        assert_eq!(req.body().size_hint().exact(), Some(5));
        assert_eq!(
            read(req.into_body()).await,
            (Bytes::from("abcde"), Some(trailers.clone()))
        );
        let again = RetryBody::<Chunks>::replay(data, kept_trailers);
        assert_eq!(read(again).await, (Bytes::from("abcde"), Some(trailers)));
    }

    #[tokio::test]
    async fn an_overflowing_body_is_streamed_whole_and_not_kept() {
        let body = chunks(&[b"abc", b"def", b"ghi", b"jkl"], None);
        let (req, kept) = buffer(body, 5).await.unwrap();
        assert!(kept.is_none(), "too big to replay");
        assert!(!req.body().is_replayed());
        assert_eq!(
            read(req.into_body()).await.0,
            "abcdefghijkl",
            "nothing lost, nothing reordered"
        );
    }

    #[tokio::test]
    async fn a_body_error_fails_the_request() {
        let frames: Vec<Result<Frame<Bytes>, std::io::Error>> = vec![
            Ok(Frame::data(Bytes::from_static(b"ab"))),
            Err(std::io::Error::other("client went away")),
        ];
        let body = StreamBody::new(stream::iter(frames));
        let err = buffer(body, 100).await.unwrap_err();
        assert_eq!(err.to_string(), "client went away");
    }

    #[test]
    fn size_hint_of_a_prefixed_stream_adds_the_prefix() {
        let body = RetryBody::prefixed(
            Some(Bytes::from_static(b"abc")),
            Some(Bytes::from_static(b"de")),
            Full::new(Bytes::from_static(b"fgh")),
        );
        assert_eq!(body.size_hint().exact(), Some(8));
        assert!(!body.is_end_stream());
        let empty: RetryBody<Full<Bytes>> = RetryBody::empty();
        assert!(empty.is_end_stream());
    }
}
