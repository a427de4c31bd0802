//! Per-route timeouts on a real axum Router, driven by `oneshot` with paused time.

mod common;

use std::{
    convert::Infallible,
    future::Future,
    io,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    task::Poll,
    time::Duration,
};

use axum::{
    Router,
    body::Body,
    routing::{get, post},
};
use bytes::Bytes;
use common::Reply;
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use steadfast::{
    Classification, Deadline, ErrorClass,
    error_handler::ErrorHandlerLayer,
    timeout::{Limit, RouteTimeoutLayer, TimeoutTable},
};
use tokio::time::{advance, sleep};
use tower::{Layer, Service, ServiceExt, service_fn};

const MS: Duration = Duration::from_millis(1);

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// The seed app's table: auth 12 s, analytics 30 s, the rest 15 s.
fn seed_table() -> TimeoutTable {
    TimeoutTable::new(secs(15))
        .prefix("/api/auth/", secs(12))
        .prefix("/api/analytics/", secs(30))
}

/// A handler that takes an hour.
async fn slow() -> &'static str {
    sleep(secs(3600)).await;
    "done"
}

/// A handler that reports the time left, in milliseconds, or `none`.
async fn remaining(deadline: Option<Deadline>) -> String {
    deadline.map_or("none".into(), |d| d.remaining().as_millis().to_string())
}

fn seed_app(layer: RouteTimeoutLayer) -> Router {
    Router::new()
        .route("/api/auth/login", post(slow))
        .route("/api/analytics/report", get(slow))
        .route("/api/campaigns", get(slow))
        .route("/api/campaigns/{id}/deadline", get(remaining))
        .layer(layer)
}

fn request(method: Method, path: &str) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(path)
        .body(Body::empty())
        .unwrap()
}

fn with_header(path: &str, value: &str) -> Request<Body> {
    Request::get(path)
        .header("request-timeout-ms", value)
        .body(Body::empty())
        .unwrap()
}

/// A request in flight, polled by hand so the test decides when time moves.
struct InFlight<F: Future>(Pin<Box<F>>);

impl<F: Future> InFlight<F> {
    /// Starts the request: the first poll runs the layer and sets the deadline.
    async fn start(future: F) -> Self {
        let mut call = Self(Box::pin(future));
        assert!(call.poll().await.is_none(), "answered at once");
        call
    }

    async fn poll(&mut self) -> Option<F::Output> {
        std::future::poll_fn(|cx| {
            Poll::Ready(match self.0.as_mut().poll(cx) {
                Poll::Ready(out) => Some(out),
                Poll::Pending => None,
            })
        })
        .await
    }
}

/// Starts `req` on `app`.
async fn start(
    app: &Router,
    req: Request<Body>,
) -> InFlight<impl Future<Output = Result<Response<Body>, Infallible>> + use<>> {
    InFlight::start(app.clone().oneshot(req)).await
}

/// Asserts the request is still pending at `limit - 1ms` and answered at `limit`.
async fn assert_fires_at<F>(call: &mut InFlight<F>, limit: Duration) -> F::Output
where
    F: Future,
{
    advance(limit - MS).await;
    assert!(call.poll().await.is_none(), "answered before {limit:?}");
    advance(MS).await;
    call.poll()
        .await
        .unwrap_or_else(|| panic!("not answered at {limit:?}"))
}

async fn reply<B>(res: Response<B>) -> Reply
where
    B: http_body::Body<Data = Bytes>,
    B::Error: std::fmt::Debug,
{
    let (parts, body) = res.into_parts();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await.unwrap().to_bytes(),
    }
}

/// The whole answer of a request that does not wait on time.
async fn answer(app: &Router, req: Request<Body>) -> (StatusCode, String) {
    let res = app.clone().oneshot(req).await.unwrap();
    let reply = reply(res).await;
    (
        reply.status,
        String::from_utf8(reply.body.to_vec()).unwrap(),
    )
}

#[tokio::test(start_paused = true)]
async fn each_seed_class_fires_at_its_limit_and_not_a_millisecond_before() {
    let app = seed_app(RouteTimeoutLayer::new(seed_table()));
    for (method, path, limit) in [
        (Method::POST, "/api/auth/login", secs(12)),
        (Method::GET, "/api/analytics/report", secs(30)),
        (Method::GET, "/api/campaigns", secs(15)),
    ] {
        let mut call = start(&app, request(method, path)).await;
        let res = assert_fires_at(&mut call, limit).await.unwrap();
        let problem = reply(res).await.assert_problem(504);
        assert_eq!(problem["title"], "Gateway Timeout", "{path}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_response_before_the_limit_passes_untouched() {
    let app = Router::new()
        .route(
            "/api/auth/login",
            post(|| async {
                sleep(secs(12) - MS).await;
                (
                    [("content-type", "text/plain"), ("x-handler", "yes")],
                    "welcome",
                )
            }),
        )
        .layer(RouteTimeoutLayer::new(seed_table()));
    let mut call = start(&app, request(Method::POST, "/api/auth/login")).await;
    advance(secs(12) - MS).await;
    let res = call.poll().await.expect("answered just in time").unwrap();
    assert!(res.extensions().get::<Classification>().is_none());
    let reply = reply(res).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.headers["x-handler"], "yes");
    assert_eq!(reply.body, "welcome");
}

#[tokio::test(start_paused = true)]
async fn the_work_stops_at_the_deadline() {
    let started = Arc::new(AtomicUsize::new(0));
    let side_effect = Arc::new(AtomicBool::new(false));
    let dropped = Arc::new(AtomicBool::new(false));
    let handler = {
        let (started, side_effect, dropped) =
            (started.clone(), side_effect.clone(), dropped.clone());
        move || async move {
            started.fetch_add(1, Ordering::SeqCst);
            let _guard = OnDrop(dropped);
            sleep(secs(20)).await;
            side_effect.store(true, Ordering::SeqCst);
            "charged the card"
        }
    };
    let app = Router::new()
        .route("/api/payments", post(handler))
        .layer(RouteTimeoutLayer::new(seed_table()));

    let mut call = start(&app, request(Method::POST, "/api/payments")).await;
    assert_eq!(started.load(Ordering::SeqCst), 1);
    assert!(!dropped.load(Ordering::SeqCst));
    let res = assert_fires_at(&mut call, secs(15)).await.unwrap();
    assert_eq!(res.status(), StatusCode::GATEWAY_TIMEOUT);
    assert!(
        dropped.load(Ordering::SeqCst),
        "the handler's future was not dropped"
    );

    advance(secs(60)).await;
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert!(
        !side_effect.load(Ordering::SeqCst),
        "the work went on after the timeout"
    );
    assert_eq!(started.load(Ordering::SeqCst), 1);
    drop(call);
}

/// Sets its flag when dropped.
struct OnDrop(Arc<AtomicBool>);

impl Drop for OnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

#[tokio::test(start_paused = true)]
async fn the_layer_itself_drops_the_inner_future_when_it_answers() {
    // Driven through `call` directly, so no outer future (axum's, `oneshot`'s)
    // could be the one dropping the handler: the layer's own future must.
    let dropped = Arc::new(AtomicBool::new(false));
    let mut svc = RouteTimeoutLayer::new(seed_table()).layer(service_fn({
        let dropped = dropped.clone();
        move |_req: Request<()>| {
            let guard = OnDrop(dropped.clone());
            async move {
                let _guard = guard;
                sleep(secs(3600)).await;
                Ok::<_, Infallible>(Response::new(String::from("done")))
            }
        }
    }));
    let future = svc
        .ready()
        .await
        .unwrap()
        .call(Request::get("/x").body(()).unwrap());
    let mut call = InFlight::start(future).await;
    assert!(!dropped.load(Ordering::SeqCst));
    let res = assert_fires_at(&mut call, secs(15)).await.unwrap();
    assert_eq!(res.status(), StatusCode::GATEWAY_TIMEOUT);
    assert!(
        dropped.load(Ordering::SeqCst),
        "the inner future outlived the answer"
    );
    drop(call);
}

#[tokio::test(start_paused = true)]
async fn handlers_read_the_time_left() {
    let app = Router::new()
        .route(
            "/api/campaigns/{id}/report",
            get(|deadline: Deadline| async move {
                let at_start = deadline.remaining();
                sleep(secs(4)).await;
                format!(
                    "{} {} {}",
                    at_start.as_millis(),
                    deadline.remaining().as_millis(),
                    deadline.allows(secs(11)),
                )
            }),
        )
        .route("/api/auth/deadline", get(remaining))
        .route("/api/analytics/deadline", get(remaining))
        .layer(RouteTimeoutLayer::new(seed_table()));

    let mut call = start(&app, request(Method::GET, "/api/campaigns/7/report")).await;
    advance(secs(4)).await;
    let res = call.poll().await.expect("answered").unwrap();
    assert_eq!(reply(res).await.body, "15000 11000 false");

    assert_eq!(
        answer(&app, request(Method::GET, "/api/auth/deadline")).await,
        (StatusCode::OK, "12000".into())
    );
    assert_eq!(
        answer(&app, request(Method::GET, "/api/analytics/deadline")).await,
        (StatusCode::OK, "30000".into())
    );
}

#[tokio::test(start_paused = true)]
async fn the_client_header_shortens_the_limit() {
    let layer = RouteTimeoutLayer::new(seed_table());
    let app = seed_app(layer.clone());

    assert_eq!(
        answer(&app, with_header("/api/campaigns/1/deadline", "5000"))
            .await
            .1,
        "5000"
    );
    let mut call = start(&app, with_header("/api/campaigns", "5000")).await;
    let res = assert_fires_at(&mut call, secs(5)).await.unwrap();
    reply(res).await.assert_problem(504);
    assert_eq!(layer.malformed_deadline_headers(), 0);
}

#[tokio::test(start_paused = true)]
async fn the_client_header_never_lengthens_the_limit() {
    let layer = RouteTimeoutLayer::new(seed_table());
    let app = seed_app(layer.clone());

    assert_eq!(
        answer(&app, with_header("/api/campaigns/1/deadline", "60000"))
            .await
            .1,
        "15000"
    );
    let mut call = start(&app, with_header("/api/campaigns", "60000")).await;
    let res = assert_fires_at(&mut call, secs(15)).await.unwrap();
    assert_eq!(res.status(), StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(layer.malformed_deadline_headers(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_malformed_header_is_ignored_and_counted() {
    let layer = RouteTimeoutLayer::new(seed_table());
    let app = seed_app(layer.clone());

    let malformed = [
        "abc",
        "-5",
        "+5",
        "0",
        "1.5",
        "5s",
        "",
        "99999999999999999999999",
    ];
    for (i, value) in malformed.into_iter().enumerate() {
        let (status, body) = answer(&app, with_header("/api/campaigns/1/deadline", value)).await;
        assert_eq!(
            (status, body.as_str()),
            (StatusCode::OK, "15000"),
            "{value:?}"
        );
        assert_eq!(
            layer.malformed_deadline_headers(),
            i as u64 + 1,
            "{value:?}"
        );
    }
    // A repeated header is not trusted either.
    let req = Request::get("/api/campaigns/1/deadline")
        .header("request-timeout-ms", "100")
        .header("request-timeout-ms", "200")
        .body(Body::empty())
        .unwrap();
    assert_eq!(answer(&app, req).await.1, "15000");
    assert_eq!(
        layer.malformed_deadline_headers(),
        malformed.len() as u64 + 1
    );

    // A malformed header does not shorten the limit: still 15 s.
    let mut call = start(&app, with_header("/api/campaigns", "soon")).await;
    assert_fires_at(&mut call, secs(15)).await.unwrap();
    assert_eq!(
        layer.malformed_deadline_headers(),
        malformed.len() as u64 + 2
    );
}

#[tokio::test(start_paused = true)]
async fn the_header_name_is_configurable_and_can_be_turned_off() {
    let table = seed_table().deadline_header(http::HeaderName::from_static("x-deadline-ms"));
    let app = seed_app(RouteTimeoutLayer::new(table));
    let req = Request::get("/api/campaigns/1/deadline")
        .header("x-deadline-ms", "250")
        .body(Body::empty())
        .unwrap();
    assert_eq!(answer(&app, req).await.1, "250");
    assert_eq!(
        answer(&app, with_header("/api/campaigns/1/deadline", "250"))
            .await
            .1,
        "15000"
    );

    let layer = RouteTimeoutLayer::new(seed_table().without_deadline_header());
    let app = seed_app(layer.clone());
    assert_eq!(
        answer(&app, with_header("/api/campaigns/1/deadline", "250"))
            .await
            .1,
        "15000"
    );
    assert_eq!(
        answer(&app, with_header("/api/campaigns/1/deadline", "x"))
            .await
            .1,
        "15000"
    );
    assert_eq!(layer.malformed_deadline_headers(), 0);
}

#[tokio::test(start_paused = true)]
async fn pattern_precedence_against_matched_path() {
    let table = TimeoutTable::new(secs(15))
        .prefix("/api/", secs(20))
        .prefix("/api/campaigns/", secs(25))
        .route("/api/campaigns/{*rest}", secs(9))
        .route("/api/campaigns/{id}/status", secs(5))
        .route("/api/campaigns/archive/status", secs(7))
        .route("/api/{kind}/{id}/status", secs(8));
    let app = Router::new()
        .route("/api/campaigns", get(remaining))
        .route("/api/campaigns/{id}", get(remaining))
        .route("/api/campaigns/{id}/status", get(remaining))
        .route("/api/campaigns/archive/status", get(remaining))
        .route("/api/users/{id}/status", get(remaining))
        .route("/api/users/{id}", get(remaining))
        .route("/health", get(remaining))
        .layer(RouteTimeoutLayer::new(table));

    for (path, expected) in [
        ("/api/campaigns/42/status", "5000"), // whole-path pattern beats prefixes
        ("/api/campaigns/archive/status", "7000"), // literal beats {param}
        ("/api/users/42/status", "8000"),     // any whole-path pattern beats prefixes
        ("/api/campaigns/42", "9000"),        // {*wildcard} beats the shorter-or-equal prefixes
        ("/api/campaigns", "25000"),          // longer prefix beats shorter
        ("/api/users/42", "20000"),
        ("/health", "15000"), // the default
    ] {
        assert_eq!(
            answer(&app, request(Method::GET, path)).await,
            (StatusCode::OK, expected.to_owned()),
            "{path}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn rules_see_the_route_pattern_inside_the_router_and_the_uri_outside() {
    let table = || TimeoutTable::new(secs(15)).route("/users/me", secs(2));
    let router = Router::new().route("/users/{id}", get(remaining));

    // Inside (`Router::layer`): the rule is matched against `/users/{id}`.
    let inside = router.clone().layer(RouteTimeoutLayer::new(table()));
    assert_eq!(
        answer(&inside, request(Method::GET, "/users/me")).await.1,
        "15000"
    );

    // Outside (wrapping the whole router): against the URI path.
    let outside = RouteTimeoutLayer::new(table()).layer(router);
    let res = outside
        .oneshot(request(Method::GET, "/users/me"))
        .await
        .unwrap();
    assert_eq!(reply(res).await.body, "2000");
}

#[tokio::test(start_paused = true)]
async fn method_specific_rules_win_over_any_method() {
    let table = TimeoutTable::new(secs(15))
        .route("/api/campaigns/{id}/status", secs(5))
        .route_for(Method::POST, "/api/campaigns/{id}/status", secs(3))
        .prefix_for(Method::DELETE, "/api/", secs(2));
    let app = Router::new()
        .route(
            "/api/campaigns/{id}/status",
            get(remaining).post(remaining).delete(remaining),
        )
        .route("/api/campaigns/{id}", get(remaining).delete(remaining))
        .layer(RouteTimeoutLayer::new(table));

    for (method, path, expected) in [
        (Method::POST, "/api/campaigns/1/status", "3000"),
        (Method::GET, "/api/campaigns/1/status", "5000"),
        // The path decides first: the DELETE prefix is less specific.
        (Method::DELETE, "/api/campaigns/1/status", "5000"),
        (Method::DELETE, "/api/campaigns/1", "2000"),
        (Method::GET, "/api/campaigns/1", "15000"),
    ] {
        assert_eq!(
            answer(&app, request(method.clone(), path)).await,
            (StatusCode::OK, expected.to_owned()),
            "{method} {path}"
        );
    }

    let slow_app = Router::new()
        .route("/api/campaigns/{id}/status", post(slow).get(slow))
        .layer(RouteTimeoutLayer::new(
            TimeoutTable::new(secs(15)).route_for(
                Method::POST,
                "/api/campaigns/{id}/status",
                secs(3),
            ),
        ));
    let mut call = start(&slow_app, request(Method::POST, "/api/campaigns/1/status")).await;
    assert_fires_at(&mut call, secs(3)).await.unwrap();
    let mut call = start(&slow_app, request(Method::GET, "/api/campaigns/1/status")).await;
    assert_fires_at(&mut call, secs(15)).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_route_can_opt_out() {
    let layer = RouteTimeoutLayer::new(seed_table().route("/api/events/{*rest}", Limit::Unlimited));
    let app = Router::new()
        .route("/api/events/{*rest}", get(slow).post(remaining))
        .layer(layer);

    assert_eq!(
        answer(&app, request(Method::POST, "/api/events/stream"))
            .await
            .1,
        "none",
        "no deadline on an opted-out route"
    );
    let mut call = start(&app, request(Method::GET, "/api/events/stream")).await;
    advance(secs(3599)).await;
    assert!(call.poll().await.is_none());
    advance(secs(1)).await;
    let res = call.poll().await.expect("answered after an hour").unwrap();
    assert_eq!(reply(res).await.body, "done");

    // The client may still ask for a deadline there: it only shortens.
    let req = Request::post("/api/events/stream")
        .header("request-timeout-ms", "1500")
        .body(Body::empty())
        .unwrap();
    assert_eq!(answer(&app, req).await.1, "1500");
    let req = Request::get("/api/events/stream")
        .header("request-timeout-ms", "1500")
        .body(Body::empty())
        .unwrap();
    let mut call = start(&app, req).await;
    assert_fires_at(&mut call, Duration::from_millis(1500))
        .await
        .unwrap();
}

#[tokio::test(start_paused = true)]
async fn the_answer_is_a_problem_that_names_no_internals() {
    let app = seed_app(RouteTimeoutLayer::new(seed_table()));
    let mut call = start(&app, request(Method::POST, "/api/auth/login")).await;
    let res = assert_fires_at(&mut call, secs(12)).await.unwrap();

    let classification = *res
        .extensions()
        .get::<Classification>()
        .expect("classified");
    assert_eq!(classification.class(), ErrorClass::Timeout);
    assert_eq!(classification.status(), Some(StatusCode::GATEWAY_TIMEOUT));

    let reply = reply(res).await;
    assert_eq!(reply.content_type(), "application/problem+json");
    let problem = reply.assert_problem(504);
    assert_eq!(problem["type"], "about:blank");
    let detail = problem["detail"].as_str().expect("a detail");
    assert_eq!(detail, "The server did not finish the request in time.");
    let body = String::from_utf8_lossy(&reply.body).to_lowercase();
    for internal in [
        "/api", "auth", "12", "ms", "tokio", "elapsed", "sleep", "deadline", "rule",
    ] {
        assert!(!body.contains(internal), "{internal:?} in {body}");
    }
}

#[tokio::test(start_paused = true)]
async fn the_status_is_configurable() {
    let app = seed_app(RouteTimeoutLayer::new(
        seed_table().timeout_status(StatusCode::SERVICE_UNAVAILABLE),
    ));
    let mut call = start(&app, request(Method::GET, "/api/campaigns")).await;
    let res = assert_fires_at(&mut call, secs(15)).await.unwrap();
    let classification = *res.extensions().get::<Classification>().unwrap();
    assert_eq!(classification.class(), ErrorClass::Timeout);
    assert_eq!(
        classification.status(),
        Some(StatusCode::SERVICE_UNAVAILABLE)
    );
    reply(res).await.assert_problem(503);
}

/// Puts a 2 s deadline in every request before `app` sees it, then checks that
/// its handler reads that deadline and that it fires, though the route allows 15 s.
async fn assert_an_earlier_outer_deadline_holds(app: Router) {
    let app = app.layer(tower::util::MapRequestLayer::new(
        |mut req: Request<Body>| {
            Deadline::after(secs(2)).insert_into(req.extensions_mut());
            req
        },
    ));
    assert_eq!(
        answer(&app, request(Method::GET, "/api/campaigns/1/deadline"))
            .await
            .1,
        "2000"
    );
    let mut call = start(&app, request(Method::GET, "/api/campaigns")).await;
    assert_fires_at(&mut call, secs(2)).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn an_earlier_outer_deadline_is_kept_and_enforced() {
    assert_an_earlier_outer_deadline_holds(seed_app(RouteTimeoutLayer::new(seed_table()))).await;
}

#[tokio::test(start_paused = true)]
async fn without_the_deadline_extension_limits_still_fire_and_outer_deadlines_hold() {
    let table = || seed_table().without_deadline_extension();
    let app = seed_app(RouteTimeoutLayer::new(table()));
    assert_eq!(
        answer(&app, request(Method::GET, "/api/campaigns/1/deadline")).await,
        (StatusCode::OK, "none".into())
    );
    for (method, path, limit) in [
        (Method::POST, "/api/auth/login", secs(12)),
        (Method::GET, "/api/campaigns", secs(15)),
    ] {
        let mut call = start(&app, request(method, path)).await;
        let res = assert_fires_at(&mut call, limit).await.unwrap();
        reply(res).await.assert_problem(504);
    }
    // A client header still shortens the limit.
    let mut call = start(&app, with_header("/api/campaigns", "700")).await;
    assert_fires_at(&mut call, MS * 700).await.unwrap();

    // An outer layer's earlier deadline stays as it was and is enforced.
    assert_an_earlier_outer_deadline_holds(seed_app(RouteTimeoutLayer::new(table()))).await;
}

#[tokio::test(start_paused = true)]
async fn the_error_handler_passes_the_answer_through() {
    let app = seed_app(RouteTimeoutLayer::new(seed_table())).layer(ErrorHandlerLayer::new());
    let mut call = start(&app, request(Method::POST, "/api/auth/login")).await;
    let res = assert_fires_at(&mut call, secs(12)).await.unwrap();
    assert_eq!(
        res.extensions().get::<Classification>().map(|c| c.class()),
        Some(ErrorClass::Timeout)
    );
    let problem = reply(res).await.assert_problem(504);
    assert_eq!(
        problem["detail"],
        "The server did not finish the request in time."
    );
}

#[tokio::test(start_paused = true)]
async fn the_error_handler_adds_the_request_id_to_the_answer() {
    let app = seed_app(RouteTimeoutLayer::new(seed_table())).layer(ErrorHandlerLayer::new());
    let mut req = request(Method::GET, "/api/campaigns");
    req.headers_mut()
        .insert("x-request-id", http::HeaderValue::from_static("req-7"));
    let mut call = start(&app, req).await;
    let res = assert_fires_at(&mut call, secs(15)).await.unwrap();
    let problem = reply(res).await.assert_problem(504);
    assert_eq!(problem["request_id"], "req-7");
    assert_eq!(
        problem["detail"],
        "The server did not finish the request in time."
    );
}

#[tokio::test(start_paused = true)]
async fn works_on_plain_tower_and_passes_errors_through() {
    let layer = RouteTimeoutLayer::new(seed_table());
    let svc = layer.layer(service_fn(|req: Request<()>| async move {
        if req.uri().path() == "/fail" {
            return Err(io::Error::other("upstream down"));
        }
        let left = Deadline::from_extensions(req.extensions()).map(|d| d.remaining());
        sleep(secs(13)).await;
        Ok(Response::new(format!("{left:?}")))
    }));

    let err = svc
        .clone()
        .oneshot(Request::get("/fail").body(()).unwrap())
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "upstream down");

    let mut call = InFlight::start(
        svc.clone()
            .oneshot(Request::get("/api/auth/login").body(()).unwrap()),
    )
    .await;
    let res = assert_fires_at(&mut call, secs(12)).await.unwrap();
    assert_eq!(res.status(), StatusCode::GATEWAY_TIMEOUT);

    let res = svc
        .oneshot(Request::get("/api/other").body(()).unwrap())
        .await
        .unwrap();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, Bytes::from("Some(15s)"));
}

thread_local! {
    /// The log lines written on this thread.
    static LOGS: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Writes log lines to the current thread's buffer.
struct ThreadLogs;

impl io::Write for ThreadLogs {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        LOGS.with(|logs| logs.borrow_mut().extend_from_slice(buf));
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Sends every log line to the buffer of the thread that wrote it, and clears
/// this thread's. A global subscriber, not a scoped one: tracing caches whether
/// a callsite is enabled, and a scoped subscriber is invisible to the other
/// tests' threads that may register the callsite first.
fn capture_logs() {
    static INIT: std::sync::Once = std::sync::Once::new();
    INIT.call_once(|| {
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_max_level(tracing::Level::DEBUG)
            .with_writer(|| ThreadLogs)
            .finish();
        tracing::subscriber::set_global_default(subscriber).unwrap();
    });
    LOGS.with(|logs| logs.borrow_mut().clear());
}

/// The JSON log lines written on this thread since `capture_logs`.
fn logged() -> Vec<serde_json::Value> {
    let bytes = LOGS.with(|logs| logs.borrow().clone());
    String::from_utf8(bytes)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_timeout_is_logged_once_with_route_limit_and_elapsed_time() {
    capture_logs();
    let app = seed_app(RouteTimeoutLayer::new(seed_table())).layer(ErrorHandlerLayer::new());
    let mut call = start(&app, request(Method::POST, "/api/auth/login")).await;
    assert_fires_at(&mut call, secs(12)).await.unwrap();
    answer(&app, with_header("/api/campaigns/1/deadline", "nope")).await;

    let lines = logged();
    let timeouts: Vec<_> = lines
        .iter()
        .filter(|l| l["fields"]["class"] == "timeout" || l["fields"]["status"] == 504)
        .collect();
    assert_eq!(timeouts.len(), 1, "{lines:#?}");
    let fields = &timeouts[0]["fields"];
    assert_eq!(timeouts[0]["level"], "WARN");
    assert_eq!(fields["route"], "/api/auth/");
    assert_eq!(fields["limit_ms"], 12000);
    assert_eq!(fields["elapsed_ms"], 12000);
    assert_eq!(fields["status"], 504);

    let malformed: Vec<_> = lines
        .iter()
        .filter(|l| l["fields"]["message"] == "malformed deadline header ignored")
        .collect();
    assert_eq!(malformed.len(), 1, "{lines:#?}");
    assert_eq!(malformed[0]["level"], "DEBUG");
    assert_eq!(malformed[0]["fields"]["header"], "request-timeout-ms");
}

#[test]
fn an_invalid_table_is_an_error() {
    let err = RouteTimeoutLayer::try_new(TimeoutTable::new(secs(1)).route("/a/{*rest}/b", secs(1)))
        .unwrap_err();
    assert_eq!(err.path(), "/a/{*rest}/b");
    let panic = std::panic::catch_unwind(|| {
        RouteTimeoutLayer::new(TimeoutTable::new(secs(1)).prefix("api", secs(1)))
    })
    .unwrap_err();
    assert_eq!(
        panic.downcast_ref::<String>().map(String::as_str),
        Some("invalid route rule `api`: a path must start with '/'")
    );
}

/// Rule paths read from configuration are owned `String`s: no leaking needed,
/// and they match exactly as literals do.
#[test]
fn rule_paths_may_be_owned_strings() {
    let from_config: Vec<(String, u64)> = vec![
        ("/api/reports/".to_owned(), 30),
        ("/api/reports/{id}/export".to_owned(), 90),
    ];
    let table =
        from_config
            .into_iter()
            .fold(TimeoutTable::new(secs(15)), |table, (path, limit)| {
                if path.ends_with('/') {
                    table.prefix(path, secs(limit))
                } else {
                    table.route(path, secs(limit))
                }
            });
    let layer = RouteTimeoutLayer::new(table);
    let limit = |path| layer.limit_for(&http::Method::GET, path);
    assert_eq!(limit("/api/reports/7"), Limit::After(secs(30)));
    assert_eq!(limit("/api/reports/7/export"), Limit::After(secs(90)));
    assert_eq!(limit("/api/reports/{id}/export"), Limit::After(secs(90)));
    assert_eq!(limit("/health"), Limit::After(secs(15)));
}
