//! The `tower-http` feature: `TraceLayer` with steadfast's `TraceClassifier`
//! marks as failed what every steadfast layer counts as failed, with the
//! class a steadfast layer already gave its own answers.

use std::{
    convert::Infallible,
    io,
    sync::{Arc, Mutex},
    time::Duration,
};

use http::{Request, Response, StatusCode};
use steadfast::{
    BoxError, ErrorClass,
    classify::{ClassifiedFailure, TraceClassifier},
    timeout::{RouteTimeoutLayer, TimeoutTable},
};
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
use tower_http::{
    classify::{ClassifiedResponse, ClassifyResponse},
    trace::TraceLayer,
};

type Failures = Arc<Mutex<Vec<ClassifiedFailure>>>;

/// A `TraceLayer` with `classifier` that keeps every failure it reports.
fn traced<S>(
    classifier: TraceClassifier,
    inner: S,
) -> (impl Service<Request<String>, Error = S::Error>, Failures)
where
    S: Service<Request<String>, Response = Response<String>> + Clone,
    S::Error: std::fmt::Display + 'static,
{
    let failures = Failures::default();
    let layer = TraceLayer::new(classifier).on_failure({
        let failures = failures.clone();
        move |failure: ClassifiedFailure, _: Duration, _: &tracing::Span| {
            failures.lock().unwrap().push(failure);
        }
    });
    (ServiceBuilder::new().layer(layer).service(inner), failures)
}

fn answering(
    status: u16,
) -> impl Service<Request<String>, Response = Response<String>, Error = Infallible, Future = impl Send>
+ Clone {
    service_fn(move |_req: Request<String>| async move {
        Ok::<_, Infallible>(
            Response::builder()
                .status(status)
                .header("retry-after", "3")
                .body(String::new())
                .unwrap(),
        )
    })
}

fn classes(failures: &Failures) -> Vec<(ErrorClass, Option<u16>)> {
    failures
        .lock()
        .unwrap()
        .iter()
        .map(|f| (f.class(), f.classification().status().map(|s| s.as_u16())))
        .collect()
}

#[tokio::test]
async fn statuses_are_failures_by_steadfast_s_rules() {
    for (status, expected) in [
        (200, None),
        (302, None),
        (404, Some(ErrorClass::Client)),
        (408, Some(ErrorClass::Timeout)),
        (429, Some(ErrorClass::Overloaded)),
        (500, Some(ErrorClass::Server)),
        (503, Some(ErrorClass::Overloaded)),
    ] {
        let (svc, failures) = traced(TraceClassifier::new(), answering(status));
        svc.oneshot(Request::new(String::new())).await.unwrap();
        assert_eq!(
            classes(&failures),
            expected
                .map(|c| (c, Some(status)))
                .into_iter()
                .collect::<Vec<_>>(),
            "{status}"
        );
    }
}

#[tokio::test]
async fn client_errors_can_be_successes_but_408_and_429_stay_failures() {
    for (status, failed) in [
        (404, false),
        (422, false),
        (408, true),
        (429, true),
        (502, true),
    ] {
        let (svc, failures) = traced(
            TraceClassifier::new().ignore_client_errors(),
            answering(status),
        );
        svc.oneshot(Request::new(String::new())).await.unwrap();
        assert_eq!(classes(&failures).len(), usize::from(failed), "{status}");
    }
}

#[test]
fn retry_after_is_read_as_every_layer_reads_it() {
    let res = Response::builder()
        .status(503)
        .header("retry-after", "3")
        .body(())
        .unwrap();
    let ClassifiedResponse::Ready(Err(failure)) = TraceClassifier::new().classify_response(&res)
    else {
        panic!("a 503 is a failure");
    };
    assert_eq!(
        failure.classification().retry_after(),
        Some(Duration::from_secs(3))
    );
    assert_eq!(failure.to_string(), "overloaded (503 Service Unavailable)");
}

#[tokio::test(start_paused = true)]
async fn a_steadfast_timeout_is_a_timeout_not_a_server_error() {
    let slow = service_fn(|_req: Request<String>| async {
        tokio::time::sleep(Duration::from_secs(5)).await;
        Ok::<_, Infallible>(Response::new(String::new()))
    });
    let timed = RouteTimeoutLayer::new(TimeoutTable::new(Duration::from_secs(1)));
    let failures = Failures::default();
    let svc = ServiceBuilder::new()
        .layer(TraceLayer::new(TraceClassifier::new()).on_failure({
            let failures = failures.clone();
            move |failure: ClassifiedFailure, _: Duration, _: &tracing::Span| {
                failures.lock().unwrap().push(failure);
            }
        }))
        .layer(timed)
        .service(slow);
    let res = svc.oneshot(Request::new(String::new())).await.unwrap();
    assert_eq!(res.status(), StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(classes(&failures), [(ErrorClass::Timeout, Some(504))]);
}

#[tokio::test]
async fn errors_are_classified_through_their_source_chain() {
    let refused = service_fn(|_req: Request<String>| async {
        let cause = io::Error::from(io::ErrorKind::ConnectionRefused);
        Err::<Response<String>, BoxError>(
            steadfast::Error::new(ErrorClass::Internal, "calling upstream")
                .with_source(cause)
                .into(),
        )
    });
    let (svc, failures) = traced(TraceClassifier::new(), refused);
    assert!(svc.oneshot(Request::new(String::new())).await.is_err());
    {
        let failures = failures.lock().unwrap();
        assert_eq!(failures.len(), 1);
        // steadfast's own error decides first: it says `internal`.
        assert_eq!(failures[0].class(), ErrorClass::Internal);
        assert_eq!(failures[0].error(), Some("calling upstream"));
    }

    let reset = service_fn(|_req: Request<String>| async {
        Err::<Response<String>, BoxError>(
            io::Error::other(io::Error::from(io::ErrorKind::ConnectionReset)).into(),
        )
    });
    let (svc, failures) = traced(TraceClassifier::new(), reset);
    assert!(svc.oneshot(Request::new(String::new())).await.is_err());
    assert_eq!(classes(&failures), [(ErrorClass::Network, None)]);
}

/// An error type steadfast does not know: `internal`, its message kept.
#[derive(Debug)]
struct Unknown;

impl std::fmt::Display for Unknown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("something odd")
    }
}

#[test]
fn an_unknown_error_type_is_internal() {
    let failure = TraceClassifier::new().classify_error(&Unknown);
    assert_eq!(failure.class(), ErrorClass::Internal);
    assert_eq!(failure.to_string(), "internal: something odd");
}
