//! Buffering a response to store it: the whole body within the limit, or the
//! body to send on with what was read put back in front.

use bytes::Bytes;
use http_body::{Body, Frame};

use crate::body::{Chunks, PrefixedBody, ResponseBody};

/// How buffering a response for the store ended.
pub(crate) enum Buffered<B: Body> {
    /// The whole body, within the limit.
    Complete(Bytes),
    /// Not storable; the body to send on, and why.
    Partial(ResponseBody<B>, Unstorable),
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
        return Buffered::Partial(ResponseBody::Inner(body), Unstorable::TooLarge);
    }
    let mut chunks = Chunks::default();
    loop {
        let (next, why) = match body.frame().await {
            None => return Buffered::Complete(chunks.into_bytes()),
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) if chunks.len() + data.len() <= limit => {
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
        return Buffered::Partial(ResponseBody::Prefixed(Box::pin(body)), why);
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
