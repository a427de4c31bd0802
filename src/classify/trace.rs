//! tower-http's response classification by steadfast's rules (feature `tower-http`).

use std::{any::Any, convert::Infallible, fmt};

use http::{Request, Response};
use tower_http::classify::{
    ClassifiedResponse, ClassifyResponse, MakeClassifier, NeverClassifyEos,
};

use super::{Classification, ErrorClass, classify_error, classify_response};
use crate::BoxError;

/// Classifies responses and errors for tower-http's `TraceLayer` (or any
/// tower-http middleware that takes a [`MakeClassifier`]) by the rules every
/// steadfast layer uses, so a trace marks as failed exactly what retry, the
/// breaker and the error handler count as failed.
///
/// - A response that a steadfast layer already classified (the route timeout's
///   504, the overload layer's or the breaker's 503, the error handler's
///   problem: each carries its [`Classification`] in its extensions) keeps that
///   classification, so a timeout is a `timeout`, not a `server` error.
/// - Any other response is classified by its status ([`classify_response`]):
///   every 4xx and 5xx is a failure, `Retry-After` read. With
///   [`ignore_client_errors`](Self::ignore_client_errors) a
///   [`Client`](ErrorClass::Client) error (a 404, a 422) is a success, as
///   tower-http's `ServerErrorsAsFailures` has it; 408 and 429 stay failures.
/// - An error is classified by walking its `source()` chain
///   ([`classify_error`]) when it is a [`BoxError`], a
///   [`steadfast::Error`](crate::Error), an `io::Error`, tower's or tokio's
///   `Elapsed` or tower's `Overloaded` (hyper's errors too with the `hyper`
///   feature); any other error type is [`Internal`](ErrorClass::Internal),
///   its message kept.
///
/// The failure class handed to `on_failure` is a [`ClassifiedFailure`].
///
/// ```
/// use steadfast::classify::{ClassifiedFailure, TraceClassifier};
/// use steadfast::ErrorClass;
/// use std::{convert::Infallible, sync::{Arc, Mutex}, time::Duration};
/// use tower::{ServiceBuilder, ServiceExt, service_fn};
/// use tower_http::trace::TraceLayer;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let failures = Arc::new(Mutex::new(Vec::new()));
/// let svc = ServiceBuilder::new()
///     .layer(TraceLayer::new(TraceClassifier::new()).on_failure({
///         let failures = failures.clone();
///         move |failure: ClassifiedFailure, _latency: Duration, _span: &tracing::Span| {
///             failures.lock().unwrap().push(failure.class());
///         }
///     }))
///     .service(service_fn(|_req: http::Request<String>| async {
///         Ok::<_, Infallible>(http::Response::builder().status(503).body(String::new()).unwrap())
///     }));
/// svc.oneshot(http::Request::new(String::new())).await.unwrap();
/// assert_eq!(*failures.lock().unwrap(), [ErrorClass::Overloaded]);
/// # }
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct TraceClassifier {
    ignore_client_errors: bool,
}

impl TraceClassifier {
    /// The classifier: every failure [`crate::classify`] names is a failure.
    pub const fn new() -> Self {
        Self {
            ignore_client_errors: false,
        }
    }

    /// Counts [`Client`](ErrorClass::Client) errors (4xx other than 408 and
    /// 429) as successes: the caller's mistake, not the service's failure.
    pub const fn ignore_client_errors(mut self) -> Self {
        self.ignore_client_errors = true;
        self
    }

    fn failure<B>(&self, res: &Response<B>) -> Option<Classification> {
        let found = res
            .extensions()
            .get::<Classification>()
            .copied()
            .or_else(|| classify_response(res))?;
        let ignored = self.ignore_client_errors && found.class() == ErrorClass::Client;
        (!ignored).then_some(found)
    }
}

impl MakeClassifier for TraceClassifier {
    type Classifier = Self;
    type FailureClass = ClassifiedFailure;
    type ClassifyEos = NeverClassifyEos<ClassifiedFailure>;

    fn make_classifier<B>(&self, _: &Request<B>) -> Self {
        *self
    }
}

impl ClassifyResponse for TraceClassifier {
    type FailureClass = ClassifiedFailure;
    type ClassifyEos = NeverClassifyEos<ClassifiedFailure>;

    fn classify_response<B>(
        self,
        res: &Response<B>,
    ) -> ClassifiedResponse<ClassifiedFailure, Self::ClassifyEos> {
        ClassifiedResponse::Ready(match self.failure(res) {
            None => Ok(()),
            Some(classification) => Err(ClassifiedFailure {
                classification,
                error: None,
            }),
        })
    }

    fn classify_error<E>(self, error: &E) -> ClassifiedFailure
    where
        E: fmt::Display + 'static,
    {
        ClassifiedFailure {
            classification: classify_any(error),
            error: Some(error.to_string()),
        }
    }
}

/// Classifies an error known only as `Display + 'static`: through its
/// `source()` chain when its type is one a tower stack returns.
fn classify_any<E: 'static>(error: &E) -> Classification {
    let any: &dyn Any = error;
    if let Some(boxed) = any.downcast_ref::<BoxError>() {
        return classify_error(&**boxed);
    }
    macro_rules! try_as {
        ($($ty:ty),* $(,)?) => {
            $(if let Some(err) = any.downcast_ref::<$ty>() {
                return classify_error(err);
            })*
        };
    }
    try_as!(
        crate::Error,
        std::io::Error,
        tower::timeout::error::Elapsed,
        tokio::time::error::Elapsed,
        tower::load_shed::error::Overloaded,
    );
    #[cfg(feature = "hyper")]
    try_as!(hyper::Error, hyper_util::client::legacy::Error);
    if any.is::<Infallible>() {
        unreachable!("Infallible has no value");
    }
    Classification::new(ErrorClass::Internal)
}

/// A failure as [`TraceClassifier`] hands it to tower-http's `on_failure`:
/// its [`Classification`], and the error's message when it was an error.
///
/// Displays as the class, then the status or the error:
/// `overloaded (503 Service Unavailable)`, `connect: connection refused`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassifiedFailure {
    classification: Classification,
    error: Option<String>,
}

impl ClassifiedFailure {
    /// The classification.
    pub fn classification(&self) -> Classification {
        self.classification
    }

    /// The class (`error.type` in OpenTelemetry's terms: [`ErrorClass::as_str`]).
    pub fn class(&self) -> ErrorClass {
        self.classification.class()
    }

    /// The error's message, when the failure was an error rather than a response.
    pub fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }
}

impl fmt::Display for ClassifiedFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.class().as_str())?;
        if let Some(status) = self.classification.status() {
            write!(f, " ({status})")?;
        }
        if let Some(error) = &self.error {
            write!(f, ": {error}")?;
        }
        Ok(())
    }
}
