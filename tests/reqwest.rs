//! The `reqwest` feature: `RetryMiddleware` in a reqwest-middleware client,
//! against a flaky server on loopback (hyper) that resets, hangs or answers
//! each connection as scripted, and records what it was sent.

use std::{
    collections::VecDeque,
    convert::Infallible,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use http::StatusCode;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use reqwest_middleware::{ClientBuilder, ClientWithMiddleware, RequestBuilder};
use steadfast::{
    Deadline, ErrorClass,
    classify::classify_error,
    reqwest::RetryMiddleware,
    retry::{DelaySource, Jitter, RetryBudget, RetryEvent, RetryIf, RetryPolicy},
};
use tokio::net::TcpListener;

/// What the server does with one connection.
#[derive(Debug, Clone, Copy)]
enum Step {
    /// Close it at once with a reset (RST), answering nothing.
    Reset,
    /// Read the request and never answer.
    Hang,
    /// Answer with this status (and this `Retry-After`, if any).
    Answer(u16, Option<&'static str>),
}

/// A request the server read: its method, body and `x-attempt` header.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    method: String,
    body: Bytes,
    attempt: Option<String>,
}

#[derive(Clone, Default)]
struct Server {
    accepted: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Server {
    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

/// Serves on loopback: each connection takes the next step of `script`, then
/// every later one is answered 200 "hello". One request per connection, so a
/// step is a request.
async fn flaky(script: impl IntoIterator<Item = Step>) -> (SocketAddr, Server) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = Server::default();
    let script = Arc::new(Mutex::new(script.into_iter().collect::<VecDeque<_>>()));
    let state = server.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            state.accepted.fetch_add(1, Ordering::SeqCst);
            let step = script
                .lock()
                .unwrap()
                .pop_front()
                .unwrap_or(Step::Answer(200, None));
            if let Step::Reset = step {
                #[allow(deprecated)]
                stream.set_linger(Some(Duration::ZERO)).unwrap();
                drop(stream);
                continue;
            }
            let seen = state.seen.clone();
            tokio::spawn(async move {
                let svc =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let seen = seen.clone();
                        async move {
                            let method = req.method().to_string();
                            let attempt = req
                                .headers()
                                .get("x-attempt")
                                .map(|v| v.to_str().unwrap().to_owned());
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            seen.lock().unwrap().push(Seen {
                                method,
                                body,
                                attempt,
                            });
                            let (status, retry_after) = match step {
                                Step::Hang => std::future::pending().await,
                                Step::Answer(status, retry_after) => (status, retry_after),
                                Step::Reset => unreachable!(),
                            };
                            let mut res = http::Response::builder().status(status);
                            if let Some(value) = retry_after {
                                res = res.header("retry-after", value);
                            }
                            Ok::<_, Infallible>(res.body(Full::new(Bytes::from("hello"))).unwrap())
                        }
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .keep_alive(false)
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, server)
}

/// A policy with short, exact delays, no budget, and its retries recorded.
fn recorded(policy: RetryPolicy) -> (RetryPolicy, Arc<Mutex<Vec<RetryEvent>>>) {
    let events = Arc::new(Mutex::new(Vec::new()));
    let log = events.clone();
    let policy = policy.on_retry(move |e| log.lock().unwrap().push(*e));
    (policy, events)
}

fn quick() -> RetryPolicy {
    RetryPolicy::new()
        .base_delay(Duration::from_millis(10))
        .jitter(Jitter::None)
        .without_budget()
}

fn client(middleware: RetryMiddleware) -> ClientWithMiddleware {
    ClientBuilder::new(reqwest::Client::new())
        .with(middleware)
        .build()
}

/// `GET /` of `addr` through `middleware`: the answer, whatever its status.
async fn get(middleware: RetryMiddleware, addr: SocketAddr) -> reqwest::Response {
    get_with(middleware, addr, |request| request).await
}

/// `GET /` of `addr` through `middleware`, the request completed by `extend`.
async fn get_with(
    middleware: RetryMiddleware,
    addr: SocketAddr,
    extend: impl FnOnce(RequestBuilder) -> RequestBuilder,
) -> reqwest::Response {
    extend(client(middleware).get(format!("http://{addr}/")))
        .send()
        .await
        .expect("an answer")
}

/// Asserts the answer's status and how many connections the server accepted
/// (one per attempt).
#[track_caller]
fn assert_answered(res: &reqwest::Response, status: StatusCode, server: &Server, attempts: usize) {
    assert_eq!(res.status(), status);
    assert_eq!(server.accepted(), attempts, "attempts");
}

fn classes(events: &Mutex<Vec<RetryEvent>>) -> Vec<ErrorClass> {
    events
        .lock()
        .unwrap()
        .iter()
        .map(|e| e.classification.class())
        .collect()
}

#[tokio::test]
async fn a_get_survives_two_reset_connections() {
    let (addr, server) = flaky([Step::Reset, Step::Reset]).await;
    let (policy, events) = recorded(quick());
    let res = get(RetryMiddleware::new(policy), addr).await;
    assert_answered(&res, StatusCode::OK, &server, 3);
    assert_eq!(res.text().await.unwrap(), "hello");
    assert_eq!(classes(&events), [ErrorClass::Network, ErrorClass::Network]);
}

#[tokio::test]
async fn a_post_without_key_is_not_resent_after_a_reset() {
    let (addr, server) = flaky([Step::Reset, Step::Reset]).await;
    let (policy, events) = recorded(quick());
    let err = client(RetryMiddleware::new(policy))
        .post(format!("http://{addr}/orders"))
        .body("{}")
        .send()
        .await
        .unwrap_err();
    assert_eq!(classify_error(&err).class(), ErrorClass::Network, "{err:?}");
    assert_eq!(server.accepted(), 1, "sent once");
    assert!(events.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_post_with_an_idempotency_key_is_resent_with_the_same_body() {
    let (addr, server) = flaky([Step::Reset, Step::Answer(503, None)]).await;
    let (policy, events) = recorded(quick());
    let res = client(RetryMiddleware::new(policy).attempt_header("x-attempt".parse().unwrap()))
        .post(format!("http://{addr}/orders"))
        .header("idempotency-key", "\"k-1\"")
        .body("{\"sku\":\"A1\"}")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(server.accepted(), 3);
    assert_eq!(
        classes(&events),
        [ErrorClass::Network, ErrorClass::Overloaded]
    );
    // The reset connection read nothing; the two answered saw the same body.
    let body = Bytes::from_static(b"{\"sku\":\"A1\"}");
    assert_eq!(
        server.seen(),
        [
            Seen {
                method: "POST".into(),
                body: body.clone(),
                attempt: Some("2".into()),
            },
            Seen {
                method: "POST".into(),
                body,
                attempt: Some("3".into()),
            },
        ]
    );
}

#[tokio::test]
async fn a_post_is_resent_when_the_connection_is_refused() {
    // A port nothing listens on.
    let addr = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let (policy, events) = recorded(quick());
    let err = client(RetryMiddleware::new(policy))
        .post(format!("http://{addr}/orders"))
        .body("{}")
        .send()
        .await
        .unwrap_err();
    assert_eq!(classify_error(&err).class(), ErrorClass::Connect);
    assert_eq!(
        classes(&events),
        [ErrorClass::Connect; 3],
        "a refused connection proves it never left"
    );
}

#[tokio::test]
async fn a_timed_out_attempt_is_retried() {
    let (addr, server) = flaky([Step::Hang]).await;
    let (policy, events) = recorded(quick().attempt_timeout(Duration::from_millis(100)));
    let res = get(RetryMiddleware::new(policy), addr).await;
    assert_answered(&res, StatusCode::OK, &server, 2);
    assert_eq!(classes(&events), [ErrorClass::Timeout]);
}

#[tokio::test]
async fn reqwest_s_own_timeout_is_a_timeout() {
    let (addr, server) = flaky([Step::Hang]).await;
    let (policy, events) = recorded(quick());
    let plain = reqwest::Client::builder()
        .timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    let res = ClientBuilder::new(plain)
        .with(RetryMiddleware::new(policy))
        .build()
        .get(format!("http://{addr}/"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(server.accepted(), 2);
    assert_eq!(classes(&events), [ErrorClass::Timeout]);
}

// Paused time: the second wait is the Retry-After sleep, skipped once every
// task waits (the socket I/O around it is real and needs no timer).
#[tokio::test(start_paused = true)]
async fn retry_after_sets_the_delay() {
    let (addr, server) = flaky([Step::Answer(429, Some("1"))]).await;
    let (policy, events) = recorded(quick());
    let started = tokio::time::Instant::now();
    let res = get(RetryMiddleware::new(policy), addr).await;
    assert_answered(&res, StatusCode::OK, &server, 2);
    assert_eq!(started.elapsed(), Duration::from_secs(1));
    let events = events.lock().unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].delay, Duration::from_secs(1));
    assert_eq!(events[0].delay_source, DelaySource::RetryAfter);
}

#[tokio::test]
async fn a_retry_after_beyond_the_ceiling_returns_the_answer() {
    let (addr, server) = flaky([Step::Answer(503, Some("60"))]).await;
    let res = get(RetryMiddleware::new(quick()), addr).await;
    assert_answered(&res, StatusCode::SERVICE_UNAVAILABLE, &server, 1);
    assert_eq!(res.headers()["retry-after"], "60");
}

#[tokio::test]
async fn an_empty_budget_returns_the_failure_at_once() {
    let (addr, server) = flaky([Step::Answer(503, None)]).await;
    let broke = quick().budget(RetryBudget::new(Duration::from_secs(10), 0, 0.0));
    let res = get(RetryMiddleware::new(broke), addr).await;
    assert_answered(&res, StatusCode::SERVICE_UNAVAILABLE, &server, 1);
}

#[tokio::test]
async fn a_deadline_in_the_extensions_is_honoured() {
    let (addr, server) = flaky([Step::Answer(503, None)]).await;
    // The first delay (10 ms) would end after the request's deadline.
    let res = get_with(RetryMiddleware::new(quick()), addr, |r| {
        r.with_extension(Deadline::after(Duration::from_millis(5)))
    })
    .await;
    assert_answered(&res, StatusCode::SERVICE_UNAVAILABLE, &server, 1);
}

#[tokio::test]
async fn the_policy_deadline_stops_an_attempt_in_flight() {
    let (addr, server) = flaky([Step::Hang]).await;
    let started = tokio::time::Instant::now();
    let err = client(RetryMiddleware::new(
        quick().deadline(Duration::from_millis(100)),
    ))
    .get(format!("http://{addr}/"))
    .send()
    .await
    .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(classify_error(&err).class(), ErrorClass::Timeout);
    assert!(err.to_string().contains("deadline elapsed"), "{err}");
    assert_eq!(server.accepted(), 1);
}

#[tokio::test]
async fn retry_if_never_sends_once() {
    let (addr, server) = flaky([Step::Answer(503, None)]).await;
    let res = get_with(RetryMiddleware::new(quick()), addr, |r| {
        r.with_extension(RetryIf::never())
    })
    .await;
    assert_answered(&res, StatusCode::SERVICE_UNAVAILABLE, &server, 1);
}

#[tokio::test]
async fn a_body_over_the_limit_is_sent_once_and_intact() {
    let (addr, server) = flaky([Step::Answer(503, None)]).await;
    let body = Bytes::from(vec![b'x'; 100]);
    let res = client(RetryMiddleware::new(quick()).max_body_bytes(64))
        .put(format!("http://{addr}/files/1"))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(server.accepted(), 1);
    assert_eq!(server.seen()[0].body, body);
}

#[tokio::test]
async fn a_body_within_the_limit_is_replayed_identically() {
    let (addr, server) = flaky([Step::Answer(503, None), Step::Answer(502, None)]).await;
    let body = Bytes::from(vec![b'y'; 64]);
    let res = client(RetryMiddleware::new(quick()).max_body_bytes(64))
        .put(format!("http://{addr}/files/1"))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let bodies: Vec<_> = server.seen().into_iter().map(|s| s.body).collect();
    assert_eq!(bodies, [body.clone(), body.clone(), body]);
}

#[tokio::test]
async fn client_errors_are_not_retried() {
    let (addr, server) = flaky([Step::Answer(404, None)]).await;
    let res = get(RetryMiddleware::new(quick()), addr).await;
    assert_answered(&res, StatusCode::NOT_FOUND, &server, 1);
}

#[tokio::test]
async fn reqwest_errors_are_classified_by_kind() {
    // Plain reqwest, no middleware: the classification alone.
    let refused = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let err = reqwest::get(format!("http://{refused}/"))
        .await
        .unwrap_err();
    assert_eq!(classify_error(&err).class(), ErrorClass::Connect, "{err:?}");

    let (addr, _) = flaky([Step::Reset, Step::Hang]).await;
    let err = reqwest::get(format!("http://{addr}/")).await.unwrap_err();
    assert_eq!(classify_error(&err).class(), ErrorClass::Network, "{err:?}");

    let slow = reqwest::Client::builder()
        .timeout(Duration::from_millis(50))
        .build()
        .unwrap();
    let err = slow
        .get(format!("http://{addr}/"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(classify_error(&err).class(), ErrorClass::Timeout, "{err:?}");
}
