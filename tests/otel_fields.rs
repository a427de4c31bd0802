//! OpenTelemetry's HTTP semantic conventions in the tracing events steadfast
//! emits: `http.request.resend_count` on each retry, `error.type` from the
//! failure's class, `http.route` as the route template. A layer captures each
//! event's fields, and the tests compare them exactly.

use std::{
    collections::BTreeMap,
    convert::Infallible,
    fmt,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use steadfast::{
    audit::{AuditEvent, Auditor, TracingSink},
    retry::{Jitter, RetryLayer, RetryPolicy},
    timeout::{RouteTimeoutLayer, TimeoutTable},
};
use tower::{Layer as _, ServiceExt, service_fn};
use tracing::{
    Subscriber,
    field::{Field, Visit},
};
use tracing_subscriber::{
    Layer,
    layer::{Context, SubscriberExt},
};

/// One event: its message and its other fields, as text.
#[derive(Debug, Clone)]
struct Captured {
    message: String,
    fields: BTreeMap<String, String>,
}

impl Captured {
    fn get(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }
}

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<Captured>>>);

impl Capture {
    /// The events whose message is `message`.
    fn events(&self, message: &str) -> Vec<Captured> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.message == message)
            .cloned()
            .collect()
    }
}

struct Fields(BTreeMap<String, String>);

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
}

impl<S: Subscriber> Layer<S> for Capture {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        let mut fields = Fields(BTreeMap::new());
        event.record(&mut fields);
        let message = fields.0.remove("message").unwrap_or_default();
        self.0.lock().unwrap().push(Captured {
            message,
            fields: fields.0,
        });
    }
}

/// Captures every event of this thread (the tests run on current-thread runtimes).
fn capture() -> (Capture, tracing::subscriber::DefaultGuard) {
    // tracing caches each callsite's interest process-wide, computed by the
    // first thread to reach it: a global no-op registry keeps every callsite
    // enabled, and the rebuild re-asks the ones already registered.
    static GLOBAL: std::sync::Once = std::sync::Once::new();
    GLOBAL.call_once(|| {
        let _ = tracing::subscriber::set_global_default(tracing_subscriber::registry());
    });
    let capture = Capture::default();
    let guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(capture.clone()));
    tracing::callsite::rebuild_interest_cache();
    (capture, guard)
}

fn exact() -> RetryPolicy {
    RetryPolicy::new()
        .base_delay(Duration::from_millis(100))
        .jitter(Jitter::None)
        .without_budget()
}

#[tokio::test(start_paused = true)]
async fn each_retry_carries_its_resend_count_and_error_type() {
    let (events, _guard) = capture();
    let statuses = Arc::new(Mutex::new(vec![200, 502, 503]));
    let upstream = service_fn(move |_req: Request<_>| {
        let status = statuses.lock().unwrap().pop().unwrap();
        async move { Ok::<_, Infallible>(Response::builder().status(status).body(()).unwrap()) }
    });
    let res = RetryLayer::new(exact())
        .layer(upstream)
        .oneshot(
            Request::get("http://upstream/")
                .body(Full::<Bytes>::default())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);

    let retries = events.events("retrying");
    let fields: Vec<_> = retries
        .iter()
        .map(|e| {
            (
                e.get("http.request.resend_count"),
                e.get("error.type"),
                e.get("attempt"),
            )
        })
        .collect();
    assert_eq!(
        fields,
        [
            (Some("1"), Some("overloaded"), Some("2")),
            (Some("2"), Some("server"), Some("3")),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_failure_returned_without_retry_carries_its_error_type() {
    let (events, _guard) = capture();
    let upstream = service_fn(|_req: Request<_>| async {
        Ok::<_, Infallible>(Response::builder().status(503).body(()).unwrap())
    });
    let post = Request::post("http://upstream/orders")
        .body(Full::new(Bytes::from_static(b"{}")))
        .unwrap();
    RetryLayer::new(exact())
        .layer(upstream)
        .oneshot(post)
        .await
        .unwrap();
    let stops = events.events("not retrying");
    assert_eq!(stops.len(), 1);
    assert_eq!(stops[0].get("error.type"), Some("overloaded"));
    assert!(events.events("retrying").is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_timeout_names_its_route_template_and_error_type() {
    let (events, _guard) = capture();
    let handler = service_fn(|_req: Request<()>| async {
        tokio::time::sleep(Duration::from_secs(5)).await;
        Ok::<_, Infallible>(Response::new(String::new()))
    });
    let svc = RouteTimeoutLayer::new(
        TimeoutTable::new(Duration::from_secs(30)).route("/reports/{id}", Duration::from_secs(1)),
    )
    .layer(handler);
    let res = svc
        .oneshot(Request::get("/reports/42").body(()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::GATEWAY_TIMEOUT);
    let timeouts = events.events("request timed out; its work was cancelled");
    assert_eq!(timeouts.len(), 1);
    assert_eq!(timeouts[0].get("http.route"), Some("/reports/{id}"));
    assert_eq!(timeouts[0].get("error.type"), Some("timeout"));
}

#[tokio::test(start_paused = true)]
async fn the_tracing_audit_sink_uses_the_http_names() {
    let (events, _guard) = capture();
    let auditor = Auditor::builder().build(TracingSink::new());
    let mut event = AuditEvent::new("campaign.delete");
    event.method = Some(Method::DELETE);
    event.route = Some("/campaigns/{id}".to_owned());
    event.status = Some(StatusCode::NO_CONTENT);
    assert!(auditor.try_record(event));
    auditor.flush().await;
    let written = events.events("audit event");
    assert_eq!(written.len(), 1);
    let e = &written[0];
    assert_eq!(e.get("http.route"), Some("/campaigns/{id}"));
    assert_eq!(e.get("http.request.method"), Some("DELETE"));
    assert_eq!(e.get("http.response.status_code"), Some("204"));
}

#[tokio::test(start_paused = true)]
async fn idempotency_events_name_axum_s_route_template() {
    use axum::{Router, routing::post};
    use steadfast::idempotency::{IdempotencyLayer, MemoryStore};

    let (events, _guard) = capture();
    let app: Router = Router::new()
        .route(
            "/campaigns/{id}/send",
            post(|| async { (StatusCode::CREATED, "sent") }),
        )
        .layer(IdempotencyLayer::new(MemoryStore::new()));
    let send = |body: &'static str| {
        Request::post("/campaigns/7/send")
            .header("idempotency-key", "\"k-1\"")
            .body(axum::body::Body::from(body))
            .unwrap()
    };
    assert_eq!(
        app.clone().oneshot(send("{}")).await.unwrap().status(),
        StatusCode::CREATED
    );
    app.clone().oneshot(send("{}")).await.unwrap();
    let reused = app.oneshot(send("{\"again\":1}")).await.unwrap();
    assert_eq!(reused.status(), StatusCode::UNPROCESSABLE_ENTITY);

    for message in [
        "idempotency: replaying",
        "idempotency: key reused for a different request",
    ] {
        let found = events.events(message);
        assert_eq!(found.len(), 1, "{message}");
        assert_eq!(
            found[0].get("http.route"),
            Some("/campaigns/{id}/send"),
            "{message}"
        );
    }
}
