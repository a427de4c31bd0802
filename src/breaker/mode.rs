//! What an open circuit answers: a 503 problem (server) or an error (client).

use std::time::Duration;

use http::{Response, StatusCode};

use crate::{BoxError, Classification, ErrorClass, Problem, ResponseBody};

/// The `detail` of the server-side refusal: what happened, naming no internals.
const DETAIL: &str =
    "The service is temporarily unavailable. Try again after the delay in Retry-After.";

/// How a breaker answers a refused call, and what its service returns.
///
/// Implemented by [`ServerSide`] and [`ClientSide`]; sealed.
pub trait OnOpen<Res, E>: sealed::Sealed {
    /// The service's response.
    type Response;
    /// The service's error.
    type Error;
    /// The inner service's result, passed on.
    fn pass(result: Result<Res, E>) -> Result<Self::Response, Self::Error>;
    /// The answer to a call refused for `retry_after`.
    fn refuse(retry_after: Duration) -> Result<Self::Response, Self::Error>;
}

/// A server's breaker: a refused request is answered `503 Service Unavailable`
/// as problem+json, with `Retry-After` (whole seconds, rounded up) and a
/// [`Classification`] of class `Overloaded` in the response's extensions.
#[derive(Debug, Clone, Copy, Default)]
pub struct ServerSide;

/// A client's breaker: a refused call fails at once with a
/// [`steadfast::Error`](crate::Error) of class
/// [`Overloaded`](ErrorClass::Overloaded) carrying the delay as its
/// `retry_after`, so a [`RetryLayer`](crate::retry::RetryLayer) outside waits
/// that long (or gives up) instead of hammering the open circuit.
#[derive(Debug, Clone, Copy, Default)]
pub struct ClientSide;

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::ServerSide {}
    impl Sealed for super::ClientSide {}
}

impl<B: http_body::Body, E> OnOpen<Response<B>, E> for ServerSide {
    type Response = Response<ResponseBody<B>>;
    type Error = E;

    #[inline]
    fn pass(result: Result<Response<B>, E>) -> Result<Self::Response, E> {
        result.map(|res| res.map(ResponseBody::Inner))
    }

    fn refuse(retry_after: Duration) -> Result<Self::Response, E> {
        let status = StatusCode::SERVICE_UNAVAILABLE;
        let mut res: Response<ResponseBody<B>> = Problem::new(status)
            .with_detail(DETAIL)
            .with_retry_after(retry_after)
            .into_layer_response::<ResponseBody<B>>();
        res.extensions_mut().insert(
            Classification::new(ErrorClass::Overloaded)
                .with_status(status)
                .with_retry_after(Some(retry_after)),
        );
        Ok(res)
    }
}

impl<Res, E: Into<BoxError>> OnOpen<Res, E> for ClientSide {
    type Response = Res;
    type Error = BoxError;

    #[inline]
    fn pass(result: Result<Res, E>) -> Result<Res, BoxError> {
        result.map_err(Into::into)
    }

    fn refuse(retry_after: Duration) -> Result<Res, BoxError> {
        Err(Box::new(
            crate::Error::new(ErrorClass::Overloaded, "circuit breaker open")
                .with_retry_after(retry_after),
        ))
    }
}
