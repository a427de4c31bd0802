use std::{
    error::Error as StdError,
    fmt, io,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use http::{HeaderValue, Response, StatusCode};

use super::*;
use crate::BoxError;

/// An error that wraps another, to build source chains.
#[derive(Debug)]
struct Wrapper(&'static str, BoxError);

impl fmt::Display for Wrapper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl StdError for Wrapper {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(&*self.1)
    }
}

fn class_of(err: impl Into<BoxError>) -> ErrorClass {
    let err: BoxError = err.into();
    classify_error(&*err).class()
}

#[test]
fn io_error_three_sources_deep() {
    let root = io::Error::from(io::ErrorKind::ConnectionReset);
    let err = Wrapper(
        "request",
        Box::new(Wrapper("pool", Box::new(Wrapper("conn", Box::new(root))))),
    );
    assert_eq!(class_of(err), ErrorClass::Network);
}

#[test]
fn io_error_kinds() {
    use io::ErrorKind::*;
    for (kind, class) in [
        (ConnectionRefused, ErrorClass::Connect),
        (NotConnected, ErrorClass::Connect),
        (AddrNotAvailable, ErrorClass::Connect),
        (HostUnreachable, ErrorClass::Connect),
        (NetworkUnreachable, ErrorClass::Connect),
        (ConnectionReset, ErrorClass::Network),
        (ConnectionAborted, ErrorClass::Network),
        (BrokenPipe, ErrorClass::Network),
        (UnexpectedEof, ErrorClass::Network),
        (TimedOut, ErrorClass::Timeout),
        (PermissionDenied, ErrorClass::Internal),
    ] {
        assert_eq!(class_of(io::Error::from(kind)), class, "{kind:?}");
    }
}

#[test]
fn io_error_wrapping_a_custom_error_is_looked_into() {
    let inner = crate::Error::new(ErrorClass::Overloaded, "shed");
    let err = io::Error::other(inner);
    assert_eq!(class_of(err), ErrorClass::Overloaded);
}

#[tokio::test]
async fn tower_and_tokio_errors() {
    assert_eq!(
        class_of(tower::timeout::error::Elapsed::new()),
        ErrorClass::Timeout
    );
    assert_eq!(
        class_of(tower::load_shed::error::Overloaded::new()),
        ErrorClass::Overloaded
    );
    let elapsed = tokio::time::timeout(Duration::ZERO, std::future::pending::<()>())
        .await
        .unwrap_err();
    assert_eq!(class_of(elapsed), ErrorClass::Timeout);
}

#[tokio::test]
async fn join_errors() {
    let panicked = tokio::spawn(async { panic!("boom") }).await.unwrap_err();
    assert_eq!(class_of(panicked), ErrorClass::Panic);
    let task = tokio::spawn(std::future::pending::<()>());
    task.abort();
    let cancelled = task.await.unwrap_err();
    assert_eq!(class_of(cancelled), ErrorClass::Cancelled);
}

#[test]
fn own_error_carries_class_and_retry_after() {
    let err = Wrapper(
        "outer",
        Box::new(
            crate::Error::new(ErrorClass::Overloaded, "budget")
                .with_retry_after(Duration::from_secs(3)),
        ),
    );
    let boxed: BoxError = Box::new(err);
    let c = classify_error(&*boxed);
    assert_eq!(c.class(), ErrorClass::Overloaded);
    assert_eq!(c.retry_after(), Some(Duration::from_secs(3)));
}

#[test]
fn unknown_errors_are_internal() {
    assert_eq!(class_of("something odd"), ErrorClass::Internal);
}

#[test]
fn transient_answers() {
    for class in [
        ErrorClass::Timeout,
        ErrorClass::Connect,
        ErrorClass::Network,
        ErrorClass::Overloaded,
    ] {
        assert!(class.is_transient());
    }
    for class in [
        ErrorClass::Server,
        ErrorClass::Client,
        ErrorClass::Cancelled,
        ErrorClass::Panic,
        ErrorClass::Internal,
    ] {
        assert!(!class.is_transient());
    }
    let server =
        |s: u16| classify_response(&Response::builder().status(s).body(()).unwrap()).unwrap();
    assert!(server(502).is_transient());
    assert!(server(504).is_transient());
    assert!(server(503).is_transient());
    assert!(!server(500).is_transient());
    assert!(!server(404).is_transient());
    assert_eq!(server(500).class(), ErrorClass::Server);
    assert_eq!(server(408).class(), ErrorClass::Timeout);
    assert_eq!(server(429).class(), ErrorClass::Overloaded);
    assert_eq!(server(422).class(), ErrorClass::Client);
    assert_eq!(server(422).status(), Some(StatusCode::UNPROCESSABLE_ENTITY));
}

#[test]
fn success_responses_are_not_failures() {
    for s in [200, 201, 204, 301, 304] {
        assert!(classify_response(&Response::builder().status(s).body(()).unwrap()).is_none());
    }
}

fn at(now: SystemTime, value: &'static str) -> Option<Duration> {
    parse_retry_after_at(&HeaderValue::from_static(value), now)
}

#[test]
fn retry_after_both_forms_and_garbage() {
    // Wed, 21 Oct 2015 07:28:00 GMT is 1445412480.
    let now = UNIX_EPOCH + Duration::from_secs(1_445_412_480 - 30);
    assert_eq!(at(now, "0"), Some(Duration::ZERO));
    assert_eq!(at(now, " 45 "), Some(Duration::from_secs(45)));
    assert_eq!(
        at(now, "Wed, 21 Oct 2015 07:28:00 GMT"),
        Some(Duration::from_secs(30))
    );
    // The obsolete RFC 850 and asctime forms are HTTP-dates too.
    assert_eq!(
        at(now, "Wednesday, 21-Oct-15 07:28:00 GMT"),
        Some(Duration::from_secs(30))
    );
    assert_eq!(
        at(now, "Wed Oct 21 07:28:00 2015"),
        Some(Duration::from_secs(30))
    );
    for garbage in [
        "",
        "soon",
        "-1",
        "-120",
        "1.5",
        "+3",
        "12abc",
        "99999999999999999999999",
        "Wed, 32 Oct 2015 07:28:00 GMT",
    ] {
        assert_eq!(at(now, garbage), None, "{garbage:?}");
    }
    // Past and present dates are not trusted as "retry now".
    assert_eq!(at(now, "Wed, 21 Oct 2015 07:27:00 GMT"), None);
    assert_eq!(
        at(
            now + Duration::from_secs(30),
            "Wed, 21 Oct 2015 07:28:00 GMT"
        ),
        None
    );
    // More than a year is garbage.
    assert_eq!(at(now, "40000000"), None);
}

#[test]
fn retry_after_from_response_headers() {
    let res = Response::builder()
        .status(429)
        .header("retry-after", "12")
        .body(())
        .unwrap();
    assert_eq!(
        classify_response(&res).unwrap().retry_after(),
        Some(Duration::from_secs(12))
    );
    let future = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(120));
    let res = Response::builder()
        .status(503)
        .header("retry-after", future)
        .body(())
        .unwrap();
    let delay = classify_response(&res).unwrap().retry_after().unwrap();
    assert!(
        delay > Duration::from_secs(115) && delay <= Duration::from_secs(120),
        "{delay:?}"
    );
    let res = Response::builder()
        .status(503)
        .header("retry-after", "garbage")
        .body(())
        .unwrap();
    assert_eq!(classify_response(&res).unwrap().retry_after(), None);
    let res = Response::builder()
        .status(503)
        .header("retry-after", "1")
        .header("retry-after", "100")
        .body(())
        .unwrap();
    assert_eq!(
        classify_response(&res).unwrap().retry_after(),
        None,
        "conflicting values"
    );
}

#[test]
fn closures_are_classifiers() {
    let everything_transient =
        |_: Result<&Response<()>, &BoxError>| Some(Classification::new(ErrorClass::Overloaded));
    let res = Response::new(());
    assert!(
        everything_transient
            .classify(Ok(&res))
            .unwrap()
            .is_transient()
    );
    let err: BoxError = io::Error::from(io::ErrorKind::BrokenPipe).into();
    let c = Classifier::<Response<()>, BoxError>::classify(&DefaultClassifier, Err(&err)).unwrap();
    assert_eq!(c.class(), ErrorClass::Network);
}

#[cfg(feature = "hyper")]
#[tokio::test]
async fn hyper_util_connect_error_from_a_refused_connection() {
    use http_body_util::Empty;
    use hyper_util::{client::legacy::Client, rt::TokioExecutor};

    // Bind then drop a listener: nothing listens on that port any more.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<bytes::Bytes>>();
    let err = client
        .get(format!("http://127.0.0.1:{port}/").parse().unwrap())
        .await
        .unwrap_err();
    assert!(err.is_connect());
    let c = DefaultClassifier
        .classify(Err::<&Response<()>, _>(&err))
        .unwrap();
    assert_eq!(c.class(), ErrorClass::Connect);
    let boxed: BoxError = Box::new(err);
    assert_eq!(classify_error(&*boxed).class(), ErrorClass::Connect);
}

#[cfg(feature = "hyper")]
#[tokio::test]
async fn hyper_error_from_a_connection_closed_mid_response() {
    use http_body_util::Empty;
    use hyper_util::{client::legacy::Client, rt::TokioExecutor};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 1024];
        let _ = socket.read(&mut buf).await;
        // A head that promises a body, then the connection goes away.
        let _ = socket
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial")
            .await;
        drop(socket);
    });
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<bytes::Bytes>>();
    let res = client
        .get(format!("http://{addr}/").parse().unwrap())
        .await
        .unwrap();
    let err = http_body_util::BodyExt::collect(res.into_body())
        .await
        .unwrap_err();
    let boxed: BoxError = Box::new(err);
    assert_eq!(classify_error(&*boxed).class(), ErrorClass::Network);
}

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
