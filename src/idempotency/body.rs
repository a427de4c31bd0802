//! [`PrefixedBody`]: the inner body, with the bytes the layer already read put back.

use std::{
    pin::Pin,
    task::{Context, Poll},
};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project::pin_project;

use crate::ResponseBody;

/// The body of [`Idempotency`](super::Idempotency)'s responses: the inner body,
/// or a body the layer wrote (a replay, a problem).
pub type IdempotencyBody<B> = ResponseBody<PrefixedBody<B>>;

/// The inner service's response body, with the frames the layer read from it
/// while trying to store it put back in front.
///
/// A response that is not stored passes through as `PrefixedBody` with nothing
/// in front (no allocation). When the layer starts buffering a response and
/// finds it larger than the limit (or ending in trailers, or failing), the client
/// still receives every byte, and the error, in order.
#[pin_project]
pub struct PrefixedBody<B: Body> {
    /// What goes before the rest; `None` on the pass-through path, so the body
    /// is one pointer larger than the inner one. Boxed: only a response the layer
    /// tried and failed to store has a prefix.
    prefix: Option<Box<Prefix<B>>>,
    #[pin]
    rest: B,
}

/// The frames read from a body before it was handed on.
struct Prefix<B: Body> {
    head: Option<Bytes>,
    next: Option<Result<Frame<Bytes>, B::Error>>,
    /// The body failed: it is not polled again.
    failed: bool,
}

impl<B: Body> std::fmt::Debug for PrefixedBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let head = self
            .prefix
            .as_ref()
            .and_then(|p| p.head.as_ref())
            .map(Bytes::len);
        f.debug_struct("PrefixedBody")
            .field("head", &head)
            .finish_non_exhaustive()
    }
}

impl<B: Body> PrefixedBody<B> {
    /// The inner body, untouched.
    pub fn new(body: B) -> Self {
        Self {
            prefix: None,
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
            prefix: Some(Box::new(Prefix {
                head: (!head.is_empty()).then_some(head),
                next,
                failed: false,
            })),
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

    #[inline]
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.project();
        if let Some(prefix) = this.prefix.as_deref_mut() {
            if let Some(head) = prefix.head.take() {
                return Poll::Ready(Some(Ok(Frame::data(head))));
            }
            if let Some(next) = prefix.next.take() {
                // A body is not polled again after it failed.
                prefix.failed = next.is_err();
                return Poll::Ready(Some(next));
            }
            if prefix.failed {
                return Poll::Ready(None);
            }
        }
        this.rest.poll_frame(cx)
    }

    #[inline]
    fn is_end_stream(&self) -> bool {
        match self.prefix.as_deref() {
            None => self.rest.is_end_stream(),
            Some(p) => {
                p.head.is_none() && p.next.is_none() && (p.failed || self.rest.is_end_stream())
            }
        }
    }

    #[inline]
    fn size_hint(&self) -> SizeHint {
        let Some(p) = self.prefix.as_deref() else {
            return self.rest.size_hint();
        };
        let buffered = p.head.as_ref().map_or(0, Bytes::len) as u64
            + match &p.next {
                Some(Ok(frame)) => frame.data_ref().map_or(0, Bytes::len) as u64,
                _ => 0,
            };
        if p.failed {
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
    Partial(PrefixedBody<B>, Unstorable),
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
        return Buffered::Partial(PrefixedBody::new(body), Unstorable::TooLarge);
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
        return Buffered::Partial(PrefixedBody::resumed(head, Some(next), body), why);
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
