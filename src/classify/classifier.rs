use std::{convert::Infallible, error::Error as StdError};

use super::{Classification, classify_error, classify_response};
use crate::BoxError;

/// Decides whether the outcome of a call failed, and how.
///
/// `None` means success. Layers that retry or record failures take a classifier so
/// users can change what counts as which failure. Any closure
/// `Fn(Result<&Res, &E>) -> Option<Classification>` is a classifier, so calling an
/// upstream's `409 Conflict` transient is one line:
///
/// ```
/// use steadfast::classify::{Classifier, Classification, DefaultClassifier, ErrorClass};
/// use http::{Response, StatusCode};
///
/// let conflicts_are_transient = |outcome: Result<&Response<()>, &steadfast::BoxError>| {
///     match outcome {
///         Ok(res) if res.status() == StatusCode::CONFLICT => {
///             Some(Classification::new(ErrorClass::Overloaded).with_status(res.status()))
///         }
///         other => DefaultClassifier.classify(other),
///     }
/// };
/// let res = Response::builder().status(409).body(()).unwrap();
/// let c = conflicts_are_transient.classify(Ok(&res)).unwrap();
/// assert!(c.is_transient());
/// ```
pub trait Classifier<Res, E> {
    /// Classifies one outcome; `None` when it is not a failure.
    fn classify(&self, outcome: Result<&Res, &E>) -> Option<Classification>;
}

impl<F, Res, E> Classifier<Res, E> for F
where
    F: Fn(Result<&Res, &E>) -> Option<Classification>,
{
    fn classify(&self, outcome: Result<&Res, &E>) -> Option<Classification> {
        self(outcome)
    }
}

/// The classifier every layer uses unless told otherwise: responses by
/// [`classify_response`], errors by [`classify_error`].
#[derive(Debug, Clone, Copy, Default)]
pub struct DefaultClassifier;

impl<B, E: AsError> Classifier<http::Response<B>, E> for DefaultClassifier {
    fn classify(&self, outcome: Result<&http::Response<B>, &E>) -> Option<Classification> {
        match outcome {
            Ok(res) => classify_response(res),
            Err(err) => Some(err.as_error().map_or(
                Classification::new(super::ErrorClass::Internal),
                classify_error,
            )),
        }
    }
}

/// Views a service's error type as a `dyn Error`, so it can be classified.
///
/// Implemented for [`BoxError`] (what most tower stacks return), steadfast's
/// [`Error`](crate::Error), `std::io::Error`, tower's and tokio's `Elapsed`,
/// `Infallible`, hyper's errors with the `hyper` feature and reqwest's (and
/// reqwest-middleware's) with the `reqwest` feature. Implement it for your
/// own error type in one line: `fn as_error(&self) -> Option<&(dyn Error + 'static)> { Some(self) }`.
pub trait AsError {
    /// The error as a trait object, or `None` when it cannot be one.
    fn as_error(&self) -> Option<&(dyn StdError + 'static)>;
}

impl AsError for BoxError {
    fn as_error(&self) -> Option<&(dyn StdError + 'static)> {
        Some(&**self)
    }
}

impl AsError for Infallible {
    fn as_error(&self) -> Option<&(dyn StdError + 'static)> {
        match *self {}
    }
}

macro_rules! as_error_for {
    ($($ty:ty),* $(,)?) => {
        $(impl AsError for $ty {
            fn as_error(&self) -> Option<&(dyn StdError + 'static)> {
                Some(self)
            }
        })*
    };
}

as_error_for!(
    crate::Error,
    std::io::Error,
    tower::timeout::error::Elapsed,
    tokio::time::error::Elapsed,
    tower::load_shed::error::Overloaded,
);

#[cfg(feature = "hyper")]
as_error_for!(hyper::Error, hyper_util::client::legacy::Error);

#[cfg(feature = "reqwest")]
as_error_for!(reqwest::Error, reqwest_middleware::Error);
