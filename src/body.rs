//! The response body of steadfast's layers: the inner service's body, or bytes
//! the layer wrote itself (a problem document, a replayed response).
//!
//! One enum instead of a boxed body keeps the success path free of allocation:
//! the inner body passes through untouched.

use std::{
    pin::Pin,
    task::{Context, Poll},
};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project::pin_project;

/// A response body that is either the inner service's or a complete buffer.
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
#[derive(Debug)]
pub enum ResponseBody<B> {
    /// The inner service's body, passed through.
    Inner(#[pin] B),
    /// A body the layer produced; `None` once it has been read.
    Full(Option<Bytes>),
}

impl<B> ResponseBody<B> {
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
}

impl<B> From<Bytes> for ResponseBody<B> {
    fn from(bytes: Bytes) -> Self {
        Self::full(bytes)
    }
}

impl<B> Default for ResponseBody<B> {
    fn default() -> Self {
        Self::empty()
    }
}

impl<B> Body for ResponseBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        match self.project() {
            ResponseBodyProj::Inner(body) => body.poll_frame(cx),
            ResponseBodyProj::Full(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Inner(body) => body.is_end_stream(),
            Self::Full(data) => data.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Inner(body) => body.size_hint(),
            Self::Full(data) => SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64)),
        }
    }
}
