//! What the retry layer relies on from classification.

use std::time::Duration;

use http::{Response, StatusCode};

use super::*;

fn response(status: u16, retry_after: Option<&str>) -> Response<()> {
    let mut b = Response::builder().status(status);
    if let Some(v) = retry_after {
        b = b.header("retry-after", v);
    }
    b.body(()).unwrap()
}

#[test]
fn transient_statuses() {
    let transient = |s| {
        classify_response(&response(s, None))
            .unwrap()
            .is_transient()
    };
    for s in [408, 429, 502, 503, 504] {
        assert!(transient(s), "{s} is transient");
    }
    for s in [400, 404, 409, 422, 500, 501] {
        assert!(!transient(s), "{s} is not transient");
    }
    assert_eq!(classify_response(&response(200, None)), None);
}

#[test]
fn retry_after_is_read_on_overload() {
    let c = classify_response(&response(429, Some("3"))).unwrap();
    assert_eq!(c.class(), ErrorClass::Overloaded);
    assert_eq!(c.status(), Some(StatusCode::TOO_MANY_REQUESTS));
    assert_eq!(c.retry_after(), Some(Duration::from_secs(3)));
    let c = classify_response(&response(404, Some("3"))).unwrap();
    assert_eq!(
        c.retry_after(),
        None,
        "a client error's Retry-After is ignored"
    );
}
