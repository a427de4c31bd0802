//! What koldly's stack costs per request, without sockets: `GET /health` sent
//! `--requests N` times (default 20 000 under `cargo bench`, 200 under
//! `cargo test --benches`) through the bare router or koldly's
//! full one with `tower::ServiceExt::oneshot`, as a server would (the
//! `ConnectInfo` extension set, the response body read to its end).
//!
//! Two more variants compare the two ways to wire the common layers, on the
//! same one-route router so that only the wiring differs: `outside` wraps the
//! router from outside, as koldly does (rules see the URI path); `router`
//! adds them with `Router::layer`, the idiomatic axum wiring (rules see the
//! route's `MatchedPath`; axum boxes the layered service per route).
//!
//! Wall time on a shared machine is noise; count instructions instead, only
//! inside [`drive`]:
//!
//! ```sh
//! cargo bench -p koldly --bench stack_cost --no-run   # prints the binary's path
//! valgrind --tool=callgrind --toggle-collect='stack_cost::drive' TARGET/release/deps/stack_cost-HASH full --requests 20000
//! valgrind --tool=callgrind --toggle-collect='stack_cost::drive' TARGET/release/deps/stack_cost-HASH bare --requests 20000
//! ```
//!
//! and divide each total by the request count. Without valgrind it prints
//! ns/request of both. Both run under koldly's own subscriber at `warn` unless
//! `--log FILTER` says otherwise (`--log none`: no subscriber; see
//! [`common::install_subscriber`]).
//!
//! `-- client` instead counts what hyper's HTTP client (the load test's
//! until it got its own reader) pays to read each server's answer
//! (`--toggle-collect='stack_cost::drive_client'`): over an in-memory pipe,
//! answered with the bytes bare axum sends, then with those koldly sends (the
//! same plus `x-request-id`).

use std::{hint::black_box, net::SocketAddr, time::Instant};

use axum::{
    Router,
    body::Body,
    extract::ConnectInfo,
    response::{IntoResponse, Response},
    routing::get,
};
use http_body_util::BodyExt;
use koldly::{App, Config, build_app};
use steadfast::{audit::Auditor, error_handler::ErrorHandlerLayer, timeout::RouteTimeoutLayer};
use tokio::runtime::Runtime;
use tower::{ServiceBuilder, ServiceExt};
use tower_http::{
    limit::RequestBodyLimitLayer,
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer},
    trace::TraceLayer,
};

mod common;

/// Sync, not `async`, so callgrind can count exactly its calls.
#[inline(never)]
fn drive(rt: &Runtime, app: &impl App, requests: usize) -> usize {
    rt.block_on(requests_to(app, requests))
}

async fn requests_to(app: &impl App, requests: usize) -> usize {
    let peer = ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40000)));
    let mut bytes = 0;
    for _ in 0..requests {
        let mut req = http::Request::get("/health")
            .header("host", "127.0.0.1")
            .body(Body::empty())
            .unwrap();
        req.extensions_mut().insert(peer);
        let res = app.clone().oneshot(req).await.unwrap();
        assert!(res.status().is_success());
        bytes += res.headers().len();
        bytes += res.into_body().collect().await.unwrap().to_bytes().len();
    }
    black_box(bytes)
}

/// koldly's common layers (request id, trace, audit, error handler, route
/// timeouts, body limit), in koldly's order, for either wiring.
fn common_layers(
    auditor: Auditor,
) -> ServiceBuilder<impl tower::Layer<Router, Service: App> + Clone> {
    ServiceBuilder::new()
        .map_response(IntoResponse::into_response)
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(TraceLayer::new_for_http())
        .layer(koldly::audit::layer(
            auditor,
            steadfast::audit::TrustedProxies::none(),
        ))
        .layer(ErrorHandlerLayer::new())
        .layer(RouteTimeoutLayer::new(koldly::app::timeouts()))
        .layer(RequestBodyLimitLayer::new(64 * 1024))
}

/// The same layers added with `Router::layer`: they run after routing, once per
/// route, and match rules against the route's `MatchedPath`.
fn on_router(routes: Router, auditor: Auditor) -> Router {
    routes.layer(
        ServiceBuilder::new()
            .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
            .layer(PropagateRequestIdLayer::x_request_id())
            .layer(TraceLayer::new_for_http())
            .layer(koldly::audit::layer(
                auditor,
                steadfast::audit::TrustedProxies::none(),
            ))
            .layer(ErrorHandlerLayer::new())
            .layer(RouteTimeoutLayer::new(koldly::app::timeouts()))
            .layer(RequestBodyLimitLayer::new(64 * 1024))
            .map_response(|res: Response<_>| res.into_response()),
    )
}

/// The answers of both servers to `GET /health`, as written on the wire.
const BODY: &str = r#"{"status":"ok","uptime_s":0,"version":"0.1.0"}"#;

fn answer(request_id: bool) -> Vec<u8> {
    let id = if request_id {
        "x-request-id: 0b5e8c4e-5b8f-4c64-9a3e-2f0c1d7e9a41\r\n"
    } else {
        ""
    };
    format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{id}date: Wed, 25 Nov 2026 12:00:00 GMT\r\n\r\n{BODY}",
        BODY.len()
    )
    .into_bytes()
}

#[inline(never)]
fn drive_client(rt: &Runtime, answer: &'static [u8], requests: usize) -> usize {
    rt.block_on(client_requests(answer, requests))
}

async fn client_requests(answer: &'static [u8], requests: usize) -> usize {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (client, mut server) = tokio::io::duplex(64 * 1024);
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        loop {
            // Requests are small and sent one at a time: one read each.
            match server.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => server.write_all(answer).await.unwrap(),
            }
        }
    });
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(client))
            .await
            .unwrap();
    tokio::spawn(conn);
    let mut bytes = 0;
    for _ in 0..requests {
        let req = http::Request::get("/health")
            .header("host", "127.0.0.1")
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        let res = sender.send_request(req).await.unwrap();
        bytes += res.headers().len();
        bytes += res.into_body().collect().await.unwrap().to_bytes().len();
    }
    black_box(bytes)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let log = common::install_subscriber(&args);
    let requests = args
        .iter()
        .position(|a| a == "--requests")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        // `cargo test --benches` runs it without `--bench`: a few requests suffice.
        .unwrap_or(if args.iter().any(|a| a == "--bench") {
            20_000
        } else {
            200
        });
    let which: Vec<&str> = ["bare", "full", "outside", "router"]
        .into_iter()
        .filter(|w| args.iter().any(|a| a == w))
        .collect();
    let which = if which.is_empty() {
        vec!["bare", "full", "outside", "router"]
    } else {
        which
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    if args.iter().any(|a| a == "client") {
        for (name, request_id) in [("bare answer", false), ("full answer", true)] {
            let answer: &'static [u8] = answer(request_id).leak();
            let started = Instant::now();
            drive_client(&rt, answer, requests);
            let ns = started.elapsed().as_nanos() as f64 / requests as f64;
            println!("client reading the {name}: {requests} requests, {ns:.0} ns/request");
        }
        return;
    }
    let (full, bare, handles, dir, outside, router) = rt.block_on(async {
        let dir = std::env::temp_dir().join(format!("koldly-stack-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let config = Config::development(format!("sqlite://{}/koldly.db?mode=rwc", dir.display()));
        let (full, handles) = build_app(config).await.expect("koldly starts");
        let bare = Router::new()
            .route("/health", get(koldly::health::health))
            .with_state(handles.state.clone());
        let outside = common_layers(handles.auditor.clone()).service(bare.clone());
        let router = on_router(bare.clone(), handles.auditor.clone());
        (full, bare, handles, dir, outside, router)
    });
    for name in which {
        let started = Instant::now();
        match name {
            "bare" => drive(&rt, &bare, requests),
            "outside" => drive(&rt, &outside, requests),
            "router" => drive(&rt, &router, requests),
            _ => drive(&rt, &full, requests),
        };
        let ns = started.elapsed().as_nanos() as f64 / requests as f64;
        println!("{name}: {requests} requests, {ns:.0} ns/request (--log {log})");
    }
    rt.block_on(handles.close());
    let _ = std::fs::remove_dir_all(&dir);
}
