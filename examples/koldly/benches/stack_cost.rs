//! What koldly's stack costs per request, without sockets: `GET /health` sent
//! `--requests N` times (default 20 000) through the bare router or koldly's
//! full one with `tower::ServiceExt::oneshot`, as a server would (the
//! `ConnectInfo` extension set, the response body read to its end).
//!
//! Wall time on a shared machine is noise; count instructions instead, only
//! inside [`drive`]:
//!
//! ```sh
//! cargo bench -p koldly --bench stack_cost --no-run   # prints the binary's path
//! valgrind --tool=callgrind --toggle-collect='stack_cost::drive' TARGET/release/deps/stack_cost-HASH -- full
//! valgrind --tool=callgrind --toggle-collect='stack_cost::drive' TARGET/release/deps/stack_cost-HASH -- bare
//! ```
//!
//! and divide each total by the request count. Without valgrind it prints
//! ns/request of both.

use std::{hint::black_box, net::SocketAddr, time::Instant};

use axum::{Router, body::Body, extract::ConnectInfo, routing::get};
use http_body_util::BodyExt;
use koldly::{Config, build_app};
use tokio::runtime::Runtime;
use tower::ServiceExt;

/// Sync, not `async`, so callgrind can count exactly its calls.
#[inline(never)]
fn drive(rt: &Runtime, router: &Router, requests: usize) -> usize {
    rt.block_on(requests_to(router, requests))
}

async fn requests_to(router: &Router, requests: usize) -> usize {
    let peer = ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40000)));
    let mut bytes = 0;
    for _ in 0..requests {
        let mut req = http::Request::get("/health")
            .header("host", "127.0.0.1")
            .body(Body::empty())
            .unwrap();
        req.extensions_mut().insert(peer);
        let res = router.clone().oneshot(req).await.unwrap();
        assert!(res.status().is_success());
        bytes += res.headers().len();
        bytes += res.into_body().collect().await.unwrap().to_bytes().len();
    }
    black_box(bytes)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let requests = args
        .iter()
        .position(|a| a == "--requests")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let which: Vec<&str> = ["bare", "full"]
        .into_iter()
        .filter(|w| args.iter().any(|a| a == w))
        .collect();
    let which = if which.is_empty() {
        vec!["bare", "full"]
    } else {
        which
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (full, bare, handles, dir) = rt.block_on(async {
        let dir = std::env::temp_dir().join(format!("koldly-stack-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let config = Config::development(format!("sqlite://{}/koldly.db?mode=rwc", dir.display()));
        let (full, handles) = build_app(config).await.expect("koldly starts");
        let bare = Router::new()
            .route("/health", get(koldly::health::health))
            .with_state(handles.state.clone());
        (full, bare, handles, dir)
    });
    for name in which {
        let router = if name == "bare" { &bare } else { &full };
        let started = Instant::now();
        drive(&rt, router, requests);
        let ns = started.elapsed().as_nanos() as f64 / requests as f64;
        println!("{name}: {requests} requests, {ns:.0} ns/request");
    }
    rt.block_on(handles.close());
    let _ = std::fs::remove_dir_all(&dir);
}
