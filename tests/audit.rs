//! Audit events on real axum Routers (through `oneshot`, and once over loopback),
//! the background writer, its sinks and its counters.

mod common;

use std::{
    collections::HashSet,
    io,
    net::{IpAddr, SocketAddr},
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, SystemTime},
};

use axum::{
    Json, Router,
    body::Body,
    extract::ConnectInfo,
    http::StatusCode,
    routing::{get, post},
};
use http::{Method, Request, Response};
use serde::Deserialize;
use serde_json::json;
use steadfast::{
    BoxError, Problem,
    audit::{
        AuditContext, AuditEvent, AuditLayer, Auditor, ForwardedHeader, FullPolicy, IpRange,
        JsonLinesSink, MemorySink, Outcome, Redaction, Sink, Target, TracingSink, TrustedProxies,
        actions,
    },
    error_handler::ErrorHandlerLayer,
};
use tokio::{sync::Semaphore, time::Instant};
use tower::{ServiceBuilder, ServiceExt, service_fn};
use tower_http::request_id::{MakeRequestUuid, SetRequestIdLayer};

const PEER: &str = "198.51.100.7:50123";

/// A request from `PEER`, as axum's `into_make_service_with_connect_info` would give it.
fn request(method: Method, uri: &str, body: Body) -> Request<Body> {
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .header("user-agent", "koldly-test/1.0")
        .header("x-request-id", "req-1")
        .header("content-type", "application/json")
        .body(body)
        .unwrap();
    req.extensions_mut()
        .insert(ConnectInfo(PEER.parse::<SocketAddr>().unwrap()));
    req
}

/// (written, dropped, sink errors)
fn counters(auditor: &Auditor) -> (u64, u64, u64) {
    let stats = auditor.stats();
    (stats.written, stats.dropped, stats.sink_errors)
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[derive(Deserialize)]
struct Login {
    email: String,
    password: String,
}

/// A login that says who authenticated, or why not.
async fn login(audit: AuditContext, Json(form): Json<Login>) -> Result<StatusCode, Problem> {
    audit.insert_extra("email", form.email.clone());
    if form.email == "jane@example.com" && form.password == "correct horse" {
        audit.set_actor("user-7");
        audit.set_action(actions::AUTHN_LOGIN_SUCCESS);
        Ok(StatusCode::NO_CONTENT)
    } else {
        audit.set_action(actions::AUTHN_LOGIN_FAIL);
        audit.set_reason("wrong password");
        Err(Problem::new(StatusCode::UNAUTHORIZED).with_detail("Wrong email or password."))
    }
}

fn app(auditor: &Auditor, calls: Arc<AtomicUsize>) -> Router {
    let counted = calls.clone();
    Router::new()
        .route(
            "/campaigns/{id}",
            post(move |audit: AuditContext| async move {
                counted.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(30)).await;
                audit.set_actor("user-7");
                audit.set_target("campaign", "42");
                audit.insert_extra("channel", "email");
                StatusCode::CREATED
            }),
        )
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(60)).await;
                "too late"
            }),
        )
        .route("/login", post(login))
        .route(
            "/health",
            get(move |audit: Option<AuditContext>| async move {
                calls.fetch_add(1, Ordering::SeqCst);
                if audit.is_some() {
                    "audited"
                } else {
                    "not audited"
                }
            }),
        )
        .route(
            "/wired-wrong",
            get(|_audit: AuditContext| async { "unreachable" }),
        )
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
                .layer(
                    AuditLayer::new(auditor.clone())
                        .route(Method::POST, "/campaigns/{id}", "campaign.update")
                        .route(Method::POST, "/login", "authn.login")
                        .route(Method::GET, "/slow", "report.export"),
                )
                .layer(ErrorHandlerLayer::new())
                .layer(tower::timeout::TimeoutLayer::new(Duration::from_millis(
                    10_000,
                ))),
        )
}

#[tokio::test(start_paused = true)]
async fn successful_request_records_every_field() {
    let sink = MemorySink::new();
    let auditor = Auditor::builder().build(sink.clone());
    let calls = Arc::new(AtomicUsize::new(0));
    let before = SystemTime::now();

    let res = app(&auditor, calls.clone())
        .oneshot(request(Method::POST, "/campaigns/42", Body::empty()))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    auditor.flush().await;

    let events = sink.events();
    assert_eq!(events.len(), 1, "{events:?}");
    let e = &events[0];
    assert!(e.time >= before && e.time <= SystemTime::now());
    assert_eq!(e.action, "campaign.update");
    assert_eq!(e.outcome, Outcome::Success);
    assert_eq!(e.actor.as_deref(), Some("user-7"));
    assert_eq!(e.client_ip, Some(ip("198.51.100.7")));
    assert_eq!(e.user_agent.as_deref(), Some("koldly-test/1.0"));
    assert_eq!(e.request_id.as_deref(), Some("req-1"));
    assert_eq!(e.method, Some(Method::POST));
    assert_eq!(e.route.as_deref(), Some("/campaigns/{id}"));
    assert_eq!(e.status, Some(StatusCode::CREATED));
    assert_eq!(e.latency, Some(Duration::from_millis(30)));
    assert_eq!(e.target, Some(Target::new("campaign", "42")));
    assert_eq!(e.reason, None);
    assert_eq!(
        serde_json::Value::Object(e.extra.clone()),
        json!({"channel": "email"})
    );

    let json: serde_json::Value = serde_json::from_str(&e.to_json()).unwrap();
    assert_eq!(json["time"], e.timestamp());
    assert_eq!(
        json.as_object().unwrap().keys().collect::<Vec<_>>(),
        [
            "action",
            "actor",
            "client_ip",
            "extra",
            "latency_ms",
            "method",
            "outcome",
            "request_id",
            "route",
            "status",
            "target",
            "time",
            "user_agent"
        ]
    );
    assert_eq!(json["client_ip"], "198.51.100.7");
    assert_eq!(json["latency_ms"], 30.0);
    assert_eq!(json["target"], json!({"type": "campaign", "id": "42"}));
    assert_eq!(counters(&auditor), (1, 0, 0));
}

#[tokio::test(start_paused = true)]
async fn failed_request_records_every_field_and_the_error_class() {
    let sink = MemorySink::new();
    let auditor = Auditor::builder().build(sink.clone());
    let before = SystemTime::now();

    // The 10 s timeout inside the error handler fires: a 504 problem whose
    // Classification (timeout) becomes the reason.
    let mut req = request(Method::GET, "/slow", Body::empty());
    req.headers_mut().remove("x-request-id");
    let res = app(&auditor, Arc::default()).oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::GATEWAY_TIMEOUT);
    let body = axum::body::to_bytes(res.into_body(), 4096).await.unwrap();
    let problem: serde_json::Value = serde_json::from_slice(&body).unwrap();
    auditor.flush().await;

    let events = sink.events();
    assert_eq!(events.len(), 1, "{events:?}");
    let e = &events[0];
    assert!(e.time >= before && e.time <= SystemTime::now());
    assert_eq!(e.action, "report.export");
    assert_eq!(e.outcome, Outcome::Error);
    assert_eq!(e.actor, None);
    assert_eq!(e.client_ip, Some(ip("198.51.100.7")));
    assert_eq!(e.user_agent.as_deref(), Some("koldly-test/1.0"));
    // tower-http's generated RequestId, the one the problem carries.
    assert!(
        e.request_id.as_deref().is_some_and(|id| id.len() == 36),
        "{e:?}"
    );
    assert_eq!(problem["request_id"].as_str(), e.request_id.as_deref());
    assert_eq!(e.method, Some(Method::GET));
    assert_eq!(e.route.as_deref(), Some("/slow"));
    assert_eq!(e.status, Some(StatusCode::GATEWAY_TIMEOUT));
    assert_eq!(e.latency, Some(Duration::from_secs(10)));
    assert_eq!(e.target, None);
    assert_eq!(
        e.reason.as_deref(),
        Some("timeout"),
        "the Classification, not the status"
    );
    assert!(e.extra.is_empty());
}

#[tokio::test]
async fn outcome_follows_the_status() {
    let sink = MemorySink::new();
    let auditor = Auditor::builder().build(sink.clone());
    let svc = ServiceBuilder::new()
        .layer(AuditLayer::new(auditor.clone()).route_any("/status/{code}", "probe"))
        .service(service_fn(|req: Request<Body>| async move {
            let code: u16 = req.uri().path()[8..].parse().unwrap();
            Ok::<_, io::Error>(
                Response::builder()
                    .status(code)
                    .body(Body::empty())
                    .unwrap(),
            )
        }));
    for code in [200, 302, 401, 403, 404, 409, 500, 503] {
        let req = Request::get(format!("/status/{code}"))
            .body(Body::empty())
            .unwrap();
        let res = svc.clone().oneshot(req).await.unwrap();
        assert_eq!(res.status().as_u16(), code);
    }
    auditor.flush().await;
    let got: Vec<_> = sink
        .events()
        .iter()
        .map(|e| (e.status.unwrap().as_u16(), e.outcome, e.reason.clone()))
        .collect();
    let reason = |s: &str| Some(s.to_owned());
    assert_eq!(
        got,
        [
            (200, Outcome::Success, None),
            (302, Outcome::Success, None),
            (401, Outcome::Denied, reason("client")),
            (403, Outcome::Denied, reason("client")),
            (404, Outcome::Failure, reason("client")),
            (409, Outcome::Failure, reason("client")),
            (500, Outcome::Error, reason("server")),
            (503, Outcome::Error, reason("overloaded")),
        ]
    );
    // No MatchedPath outside a Router: the path was matched against the pattern,
    // and no peer address was known.
    assert!(
        sink.events()
            .iter()
            .all(|e| e.route.as_deref() == Some("/status/{code}"))
    );
    assert!(sink.events().iter().all(|e| e.client_ip.is_none()));
}

#[tokio::test]
async fn handler_enrichment_names_who_logged_in_or_why_not() {
    let sink = MemorySink::new();
    let auditor = Auditor::builder().build(sink.clone());
    let app = app(&auditor, Arc::default());

    let ok = r#"{"email": "jane@example.com", "password": "correct horse"}"#;
    let res = app
        .clone()
        .oneshot(request(Method::POST, "/login", Body::from(ok)))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);

    let bad = r#"{"email": "jane@example.com", "password": "guess"}"#;
    let res = app
        .clone()
        .oneshot(request(Method::POST, "/login", Body::from(bad)))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    auditor.flush().await;

    let events = sink.events();
    assert_eq!(events.len(), 2, "{events:?}");
    let (ok, bad) = (&events[0], &events[1]);
    assert_eq!(ok.action, "authn.login.success");
    assert_eq!(ok.outcome, Outcome::Success);
    assert_eq!(ok.actor.as_deref(), Some("user-7"));
    assert_eq!(ok.status, Some(StatusCode::NO_CONTENT));
    assert_eq!(ok.extra["email"], "jane@example.com");
    assert_eq!(bad.action, "authn.login.fail");
    assert_eq!(bad.outcome, Outcome::Denied);
    assert_eq!(bad.actor, None);
    assert_eq!(bad.reason.as_deref(), Some("wrong password"));
    assert_eq!(bad.status, Some(StatusCode::UNAUTHORIZED));
    assert_eq!(bad.route.as_deref(), Some("/login"));
}

#[tokio::test]
async fn handlers_override_the_outcome_and_add_events() {
    let sink = MemorySink::new();
    let auditor = Auditor::builder().build(sink.clone());
    let app = Router::new()
        .route(
            "/account/password",
            post(|audit: AuditContext| async move {
                audit.set_actor("user-7");
                audit.set_outcome(Outcome::Failure);
                audit.set_reason("new password reuses an old one");
                audit.record(
                    AuditEvent::new("session.expired")
                        .with_reason("password change ends other sessions")
                        .with_target("session", "s-1"),
                );
                StatusCode::OK
            }),
        )
        .layer(AuditLayer::new(auditor.clone()).route(
            Method::POST,
            "/account/password",
            "authn.password.change",
        ));
    let res = app
        .oneshot(request(Method::POST, "/account/password", Body::empty()))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    auditor.flush().await;

    let events = sink.events();
    assert_eq!(events.len(), 2, "{events:?}");
    let (main, extra) = (&events[0], &events[1]);
    assert_eq!(main.action, "authn.password.change");
    assert_eq!(
        main.outcome,
        Outcome::Failure,
        "the handler's outcome beats the 200"
    );
    assert_eq!(
        main.reason.as_deref(),
        Some("new password reuses an old one")
    );
    assert_eq!(extra.action, "session.expired");
    assert_eq!(extra.target, Some(Target::new("session", "s-1")));
    // The added event gets the request's fields and actor.
    assert_eq!(extra.actor.as_deref(), Some("user-7"));
    assert_eq!(extra.client_ip, Some(ip("198.51.100.7")));
    assert_eq!(extra.request_id.as_deref(), Some("req-1"));
    assert_eq!(extra.route.as_deref(), Some("/account/password"));
    assert_eq!(extra.status, None);
}

#[tokio::test]
async fn unconfigured_routes_pass_through_without_a_context() {
    let sink = MemorySink::new();
    let auditor = Auditor::builder().build(sink.clone());
    let calls = Arc::new(AtomicUsize::new(0));
    let app = app(&auditor, calls.clone());

    let res = app
        .clone()
        .oneshot(request(Method::GET, "/health", Body::empty()))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let body = axum::body::to_bytes(res.into_body(), 1024).await.unwrap();
    assert_eq!(&body[..], b"not audited");
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    // A configured path with another method is not audited either.
    let res = app
        .clone()
        .oneshot(request(Method::GET, "/campaigns/42", Body::empty()))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED);

    // A handler that insists on a context on an unaudited route is a wiring
    // mistake: a 500 problem, not a panic.
    let res = app
        .oneshot(request(Method::GET, "/wired-wrong", Body::empty()))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(res.headers()["content-type"], "application/problem+json");

    auditor.flush().await;
    assert!(sink.is_empty(), "{:?}", sink.events());
}

async fn client_ip_of(
    proxies: TrustedProxies,
    peer: &str,
    headers: &[(&'static str, &str)],
) -> Option<IpAddr> {
    let sink = MemorySink::new();
    let auditor = Auditor::builder().build(sink.clone());
    let app = Router::new()
        .route("/login", post(|| async { "ok" }))
        .layer(
            AuditLayer::new(auditor.clone())
                .route(Method::POST, "/login", "authn.login")
                .trusted_proxies(proxies),
        );
    let mut req = Request::post("/login").body(Body::empty()).unwrap();
    for (name, value) in headers {
        req.headers_mut().append(*name, value.parse().unwrap());
    }
    req.extensions_mut()
        .insert(ConnectInfo(peer.parse::<SocketAddr>().unwrap()));
    let res = app.oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    auditor.flush().await;
    let events = sink.events();
    assert_eq!(events.len(), 1);
    events[0].client_ip
}

#[tokio::test]
async fn x_forwarded_for_only_from_trusted_proxies() {
    let lb = || {
        TrustedProxies::none()
            .trust("10.0.0.0/8".parse::<IpRange>().unwrap())
            .trust(ip("192.0.2.1"))
    };
    let xff = [("x-forwarded-for", "6.6.6.6, 203.0.113.9, 10.0.0.5")];

    // Nobody is trusted by default: the peer, whatever the header says.
    assert_eq!(
        client_ip_of(TrustedProxies::none(), "10.0.0.1:4000", &xff).await,
        Some(ip("10.0.0.1"))
    );
    // An untrusted peer is the client.
    assert_eq!(
        client_ip_of(lb(), "198.51.100.7:4000", &xff).await,
        Some(ip("198.51.100.7"))
    );
    // A trusted peer: right to left, skipping trusted hops; the forged left entry is ignored.
    assert_eq!(
        client_ip_of(lb(), "10.0.0.1:4000", &xff).await,
        Some(ip("203.0.113.9"))
    );
    // Several header lines form one chain.
    let lines = [
        ("x-forwarded-for", "203.0.113.9"),
        ("x-forwarded-for", "192.0.2.1, 10.0.0.5"),
    ];
    assert_eq!(
        client_ip_of(lb(), "10.0.0.1:4000", &lines).await,
        Some(ip("203.0.113.9"))
    );
    // Forwarded is not read when the proxies write X-Forwarded-For.
    let fwd = [("forwarded", "for=6.6.6.6")];
    assert_eq!(
        client_ip_of(lb(), "10.0.0.1:4000", &fwd).await,
        Some(ip("10.0.0.1"))
    );
}

#[tokio::test]
async fn forwarded_only_from_trusted_proxies() {
    let lb = || {
        TrustedProxies::none()
            .trust("10.0.0.0/8".parse::<IpRange>().unwrap())
            .header(ForwardedHeader::Forwarded)
    };
    let fwd = [(
        "forwarded",
        r#"for=6.6.6.6, for="[2001:db8:cafe::17]:4711";proto=https, for=10.0.0.5;by=10.0.0.1"#,
    )];
    assert_eq!(
        client_ip_of(lb(), "10.0.0.1:4000", &fwd).await,
        Some(ip("2001:db8:cafe::17"))
    );
    assert_eq!(
        client_ip_of(lb(), "203.0.113.1:4000", &fwd).await,
        Some(ip("203.0.113.1"))
    );
    assert_eq!(
        client_ip_of(
            TrustedProxies::none().header(ForwardedHeader::Forwarded),
            "10.0.0.1:4000",
            &fwd
        )
        .await,
        Some(ip("10.0.0.1"))
    );
    // X-Forwarded-For is not read when the proxies write Forwarded.
    let xff = [("x-forwarded-for", "6.6.6.6")];
    assert_eq!(
        client_ip_of(lb(), "10.0.0.1:4000", &xff).await,
        Some(ip("10.0.0.1"))
    );
}

#[tokio::test]
async fn plain_socket_addr_extension_for_hyper_users() {
    let sink = MemorySink::new();
    let auditor = Auditor::builder().build(sink.clone());
    let svc = ServiceBuilder::new()
        .layer(AuditLayer::new(auditor.clone()).route(Method::POST, "/login", "authn.login"))
        .service(service_fn(|_req: Request<Body>| async {
            Ok::<_, io::Error>(Response::new(Body::empty()))
        }));
    let mut req = Request::post("/login").body(Body::empty()).unwrap();
    req.extensions_mut()
        .insert("[2001:db8::9]:443".parse::<SocketAddr>().unwrap());
    svc.oneshot(req).await.unwrap();
    auditor.flush().await;
    assert_eq!(sink.events()[0].client_ip, Some(ip("2001:db8::9")));
}

/// The file name is unique per test run; the file is removed when dropped.
struct TempFile(std::path::PathBuf);

impl TempFile {
    fn new(name: &str) -> Self {
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        Self(std::env::temp_dir().join(format!(
            "steadfast-audit-{name}-{}-{nanos}.jsonl",
            std::process::id()
        )))
    }

    fn lines(&self) -> Vec<String> {
        std::fs::read_to_string(&self.0)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[tokio::test]
async fn secrets_are_redacted_and_control_characters_escaped() {
    let file = TempFile::new("redaction");
    let auditor = Auditor::builder()
        .redaction(Redaction::new().mask_emails(true))
        .build(JsonLinesSink::append(&file.0).unwrap());
    let app = Router::new()
        .route(
            "/signup",
            post(|audit: AuditContext| async move {
                audit.set_actor("jane@example.com");
                audit.insert_extra("password", "hunter2");
                audit.insert_extra("Api-Key", "k-123");
                audit.insert_extra("form", json!({"name": "Jane", "new_password": "hunter2"}));
                audit.set_reason("name was \"Jane\r\n{\\\"action\\\":\\\"authz.admin\\\"}\"");
                let mut event = AuditEvent::new("authn.signup.confirm");
                event.user_agent = Some("evil\r\n{\"action\":\"forged\"}\u{1b}[2J".to_owned());
                audit.record(event);
                StatusCode::CREATED
            }),
        )
        .layer(AuditLayer::new(auditor.clone()).route(Method::POST, "/signup", "authn.signup"));
    let mut req = request(Method::POST, "/signup", Body::empty());
    req.headers_mut()
        .insert("user-agent", "curl\t8.0".parse().unwrap());
    let res = app.oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    auditor.flush().await;

    let raw = std::fs::read_to_string(&file.0).unwrap();
    assert!(!raw.contains("hunter2"), "{raw}");
    assert!(!raw.contains("k-123"), "{raw}");
    assert!(!raw.contains("jane@"), "{raw}");
    assert!(!raw.contains('\r'), "{raw}");
    let lines = file.lines();
    assert_eq!(lines.len(), 2, "{raw}");
    let signup: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(signup["extra"]["password"], "[REDACTED]");
    assert_eq!(signup["extra"]["Api-Key"], "[REDACTED]");
    assert_eq!(
        signup["extra"]["form"],
        json!({"name": "Jane", "new_password": "[REDACTED]"})
    );
    assert_eq!(signup["actor"], "j***@example.com");
    assert_eq!(signup["user_agent"], "curl\\t8.0");
    assert_eq!(
        signup["reason"],
        "name was \"Jane\\r\\n{\\\"action\\\":\\\"authz.admin\\\"}\""
    );
    let confirm: serde_json::Value = serde_json::from_str(&lines[1]).unwrap();
    assert_eq!(confirm["action"], "authn.signup.confirm");
    assert_eq!(
        confirm["user_agent"],
        "evil\\r\\n{\"action\":\"forged\"}\\u001b[2J"
    );
}

/// A `MakeWriter` collecting what a tracing subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[tokio::test]
async fn tracing_sink_writes_one_line_per_event_on_the_audit_target() {
    let out = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(out.clone())
        .with_ansi(false)
        .with_env_filter("audit=info")
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let auditor = Auditor::builder().build(TracingSink::new());
    // An action built from user input, trying to forge a second line.
    let mut event = AuditEvent::new("authz.fail\nINFO audit: action=authz.success")
        .with_outcome(Outcome::Denied)
        .with_actor("user-7")
        .with_reason("not an admin\nINFO audit: action=authz.success");
    event.user_agent = Some("ua\r\nforged".to_owned());
    assert!(auditor.record(event).await);
    auditor.flush().await;

    let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<_> = text.lines().collect();
    assert_eq!(lines.len(), 1, "{text}");
    assert!(lines[0].contains(" audit: "), "{text}");
    assert!(lines[0].contains("action=authz.fail\\nINFO"), "{text}");
    assert!(
        lines[0].contains("outcome=\"denied\"") || lines[0].contains("outcome=denied"),
        "{text}"
    );
    assert!(
        lines[0].contains("actor=\"user-7\"") || lines[0].contains("actor=user-7"),
        "{text}"
    );
    assert_eq!(auditor.written(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_concurrent_events_become_ten_thousand_lines() {
    let file = TempFile::new("10k");
    let auditor = Auditor::builder()
        .capacity(512)
        .when_full(FullPolicy::Wait(Duration::from_secs(60)))
        .build(JsonLinesSink::append(&file.0).unwrap());

    let tasks: Vec<_> = (0..10_000)
        .map(|n| {
            let auditor = auditor.clone();
            tokio::spawn(async move {
                auditor
                    .record(AuditEvent::new("campaign.create").with_extra("n", n))
                    .await
            })
        })
        .collect();
    for task in tasks {
        assert!(task.await.unwrap());
    }
    auditor.flush().await;

    let lines = file.lines();
    assert_eq!(lines.len(), 10_000);
    let seen: HashSet<u64> = lines
        .iter()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            v["extra"]["n"].as_u64().unwrap()
        })
        .collect();
    assert_eq!(seen.len(), 10_000);
    assert_eq!(auditor.stats().written, 10_000);
    assert_eq!(auditor.stats().dropped, 0);
}

/// Blocks every write until the gate opens, then keeps what it got.
#[derive(Clone)]
struct GatedSink {
    gate: Arc<Semaphore>,
    events: MemorySink,
}

impl GatedSink {
    fn closed() -> Self {
        Self {
            gate: Arc::new(Semaphore::new(0)),
            events: MemorySink::new(),
        }
    }

    fn open(&self) {
        self.gate.add_permits(1);
    }
}

impl Sink for GatedSink {
    async fn write(&mut self, events: &[AuditEvent]) -> Result<(), BoxError> {
        let _pass = self.gate.acquire().await?;
        self.events.write(events).await
    }
}

fn audited_ok(auditor: &Auditor) -> Router {
    Router::new()
        .route("/login", post(|| async { "ok" }))
        .layer(AuditLayer::new(auditor.clone()).route(Method::POST, "/login", "authn.login"))
}

#[tokio::test(start_paused = true)]
async fn a_stalled_sink_costs_requests_at_most_the_configured_wait() {
    let sink = GatedSink::closed();
    let wait = Duration::from_millis(5);
    let auditor = Auditor::builder()
        .capacity(2)
        .max_batch(1)
        .when_full(FullPolicy::Wait(wait))
        .build(sink.clone());
    let app = audited_ok(&auditor);

    for i in 0..10 {
        let started = Instant::now();
        let res = app
            .clone()
            .oneshot(request(Method::POST, "/login", Body::empty()))
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert!(
            started.elapsed() <= wait,
            "request {i} took {:?}",
            started.elapsed()
        );
    }
    // One event is stuck in the sink, two fill the queue, the other seven waited 5 ms and were dropped.
    assert_eq!(auditor.dropped(), 7);
    assert_eq!(auditor.written(), 0);

    sink.open();
    auditor.flush().await;
    assert_eq!(sink.events.len(), 3);
    assert_eq!(counters(&auditor), (3, 7, 0));
}

#[tokio::test(start_paused = true)]
async fn the_drop_policy_never_waits() {
    let sink = GatedSink::closed();
    let auditor = Auditor::builder()
        .capacity(1)
        .max_batch(1)
        .when_full(FullPolicy::Drop)
        .build(sink.clone());
    let app = audited_ok(&auditor);
    let started = Instant::now();
    for _ in 0..5 {
        let res = app
            .clone()
            .oneshot(request(Method::POST, "/login", Body::empty()))
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        tokio::task::yield_now().await;
    }
    assert_eq!(started.elapsed(), Duration::ZERO);
    // One in the sink, one queued, three dropped.
    assert_eq!(auditor.dropped(), 3);
    assert!(!auditor.try_record(AuditEvent::new("job.run")));
    assert_eq!(auditor.dropped(), 4);
    sink.open();
    auditor.flush().await;
    assert_eq!(auditor.written(), 2);
}

/// Takes 10 ms (of paused time) per batch.
#[derive(Clone, Default)]
struct SlowSink(MemorySink);

impl Sink for SlowSink {
    async fn write(&mut self, events: &[AuditEvent]) -> Result<(), BoxError> {
        tokio::time::sleep(Duration::from_millis(10)).await;
        self.0.write(events).await
    }
}

#[tokio::test(start_paused = true)]
async fn shutdown_writes_every_queued_event() {
    let sink = SlowSink::default();
    let auditor = Auditor::builder()
        .capacity(100)
        .max_batch(5)
        .build(sink.clone());
    // Recorded from a background job, through the same handle.
    for n in 0..60 {
        assert!(auditor.try_record(AuditEvent::new("job.cleanup").with_extra("n", n)));
    }
    // And from requests.
    let app = audited_ok(&auditor);
    for _ in 0..3 {
        app.clone()
            .oneshot(request(Method::POST, "/login", Body::empty()))
            .await
            .unwrap();
    }
    assert!(
        sink.0.len() < 63,
        "events are still queued when shutdown starts"
    );

    auditor.shutdown().await;
    assert_eq!(sink.0.len(), 63);
    let ns: Vec<u64> = sink.0.events()[..60]
        .iter()
        .map(|e| e.extra["n"].as_u64().unwrap())
        .collect();
    assert_eq!(ns, (0..60).collect::<Vec<_>>(), "in order");
    assert_eq!(auditor.stats().written, 63);
    assert_eq!(auditor.stats().dropped, 0);

    // After shutdown nothing is accepted, and that is counted.
    assert!(auditor.is_shut_down());
    assert!(!auditor.record(AuditEvent::new("job.cleanup")).await);
    assert_eq!(auditor.dropped(), 1);
    auditor.flush().await;
    auditor.shutdown().await;
}

/// Fails (or panics) its first calls, then keeps what it gets.
#[derive(Clone)]
struct FlakySink {
    failures: Arc<AtomicUsize>,
    panic_first: bool,
    calls: Arc<AtomicUsize>,
    events: MemorySink,
}

impl FlakySink {
    fn failing(times: usize) -> Self {
        Self {
            failures: Arc::new(AtomicUsize::new(times)),
            panic_first: false,
            calls: Arc::default(),
            events: MemorySink::new(),
        }
    }
}

impl Sink for FlakySink {
    async fn write(&mut self, events: &[AuditEvent]) -> Result<(), BoxError> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst);
        if self.failures.load(Ordering::SeqCst) > 0 {
            self.failures.fetch_sub(1, Ordering::SeqCst);
            if self.panic_first && call == 0 {
                panic!("sink bug");
            }
            return Err(io::Error::other("database is down").into());
        }
        self.events.write(events).await
    }
}

#[tokio::test(start_paused = true)]
async fn a_failing_sink_is_retried_and_writes_each_event_once() {
    let mut sink = FlakySink::failing(3);
    sink.panic_first = true;
    let auditor = Auditor::builder()
        .sink_backoff(Duration::from_millis(100), Duration::from_secs(1))
        .build(sink.clone());
    let app = audited_ok(&auditor);
    let started = Instant::now();
    for _ in 0..3 {
        let res = app
            .clone()
            .oneshot(request(Method::POST, "/login", Body::empty()))
            .await
            .unwrap();
        assert_eq!(
            res.status(),
            StatusCode::OK,
            "a failing sink never fails a request"
        );
    }
    assert_eq!(started.elapsed(), Duration::ZERO);
    auditor.flush().await;

    let events = sink.events.events();
    assert_eq!(events.len(), 3, "each event exactly once: {events:?}");
    assert_eq!(sink.calls.load(Ordering::SeqCst), 4);
    assert_eq!(counters(&auditor), (3, 0, 3));
    // Backoff 100 + 200 + 400 ms.
    assert_eq!(started.elapsed(), Duration::from_millis(700));
}

#[tokio::test(start_paused = true)]
async fn a_sink_that_keeps_failing_drops_after_bounded_attempts() {
    let sink = FlakySink::failing(usize::MAX);
    let auditor = Auditor::builder()
        .sink_attempts(3)
        .sink_backoff(Duration::from_millis(10), Duration::from_millis(10))
        .build(sink.clone());
    let res = audited_ok(&auditor)
        .oneshot(request(Method::POST, "/login", Body::empty()))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    auditor.flush().await;
    assert_eq!(sink.calls.load(Ordering::SeqCst), 3);
    assert_eq!(counters(&auditor), (0, 1, 3));
}

#[tokio::test(start_paused = true)]
async fn a_request_dropped_midway_is_recorded_as_cancelled() {
    let sink = MemorySink::new();
    let auditor = Auditor::builder().build(sink.clone());
    let app = Router::new()
        .route(
            "/export",
            post(|| async {
                tokio::time::sleep(Duration::from_secs(60)).await;
                "done"
            }),
        )
        .layer(AuditLayer::new(auditor.clone()).route(Method::POST, "/export", "report.export"));
    let call = app.oneshot(request(Method::POST, "/export", Body::empty()));
    assert!(
        tokio::time::timeout(Duration::from_secs(1), call)
            .await
            .is_err()
    );
    auditor.flush().await;
    let events = sink.events();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].outcome, Outcome::Error);
    assert_eq!(events[0].reason.as_deref(), Some("cancelled"));
    assert_eq!(events[0].status, None);
}

#[tokio::test]
async fn over_loopback_the_peer_is_the_client() {
    let sink = MemorySink::new();
    let auditor = Auditor::builder().build(sink.clone());
    let addr = common::serve(app(&auditor, Arc::default())).await;
    let reply = common::send_json(
        addr,
        "POST",
        "/login",
        r#"{"email": "jane@example.com", "password": "correct horse"}"#,
    )
    .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    auditor.flush().await;
    let events = sink.events();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].action, "authn.login.success");
    assert_eq!(events[0].client_ip, Some(ip("127.0.0.1")));
    assert_eq!(events[0].route.as_deref(), Some("/login"));
    assert!(events[0].request_id.is_some(), "SetRequestIdLayer made one");
}
