//! Calls one variant of the criterion groups `n` times, for counting instructions
//! under callgrind, which is repeatable where wall-clock time on a shared machine is
//! not. `benches/count-instructions.sh` runs it twice (`n` and none) and prints the
//! instructions per call.
//!
//! ```sh
//! cargo bench --all-features --bench instructions --no-run
//! benches/count-instructions.sh timeout/tower timeout/steadfast-1
//! benches/count-instructions.sh "stack/bare Router" "stack/whole stack"
//! ```
//!
//! The stack variants are named after the stack group's (`stack/ErrorHandler`,
//! `stack/Idempotency (no key)`, ...; see `support/stack.rs`).

mod support;

use std::{hint::black_box, time::Duration};

use http::Request;
use steadfast::{
    audit::Auditor,
    error_handler::ErrorHandlerLayer,
    idempotency::{IdempotencyLayer, MemoryStore},
    timeout::RouteTimeoutLayer,
};
use support::audit::NullSink;
use tower::{Layer, Service, service_fn};
use tower_http::catch_panic::CatchPanicLayer;

async fn repeat<S, B>(n: u64, svc: S, request: impl Fn() -> Request<B>)
where
    S: Service<Request<B>> + Clone,
    S::Error: std::fmt::Debug,
{
    for _ in 0..n {
        black_box(support::call(&mut svc.clone(), request()).await);
    }
}

/// Every variant, for `cargo test --benches`, which runs each once.
const VARIANTS: &[&str] = &[
    "bare/get",
    "bare/post",
    "timeout/tower",
    "timeout/tower+handle_error",
    "timeout/tower-http",
    "timeout/steadfast-1",
    "timeout/steadfast-50",
    "timeout/steadfast-1-no-deadline",
    "error_handler/catch_panic",
    "error_handler/catch_panic+handle_error",
    "error_handler/steadfast",
    "idempotency/pass-through",
    "idempotency/identity-layer",
    "idempotency/tower-http-validate",
    "retry/bare",
    "retry/tower",
    "retry/steadfast",
    "audit/bare",
    "audit/trace-json",
    "audit/unaudited",
    "audit/one-event",
    "stack/bare Router",
    "stack/ErrorHandler",
    "stack/RouteTimeout",
    "stack/Idempotency (no key)",
    "stack/Audit (one event)",
    "stack/whole stack",
];

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--bench") {
        // `cargo bench` runs every bench target with criterion's flags: this one
        // only counts under callgrind, so it has nothing to do here.
        eprintln!(
            "instructions: skipped (run it through benches/count-instructions.sh VARIANT...)"
        );
        return;
    }
    let rt = support::runtime();
    let Some(variant) = args.first().filter(|a| !a.starts_with('-')) else {
        // `cargo test --benches`: every variant once, so none rots unseen.
        for variant in VARIANTS {
            rt.block_on(run(variant, 1));
        }
        println!("instructions: {} variants ran once each", VARIANTS.len());
        return;
    };
    let n: u64 = args.get(1).and_then(|n| n.parse().ok()).unwrap_or(0);
    rt.block_on(run(variant, n));
}

/// Calls `variant` `n` times.
async fn run(variant: &str, n: u64) {
    let get = || support::get(support::timeout::PATH);
    let post_without_key = || support::post(None);
    match variant {
        "bare/get" => repeat(n, service_fn(support::ok), get).await,
        "bare/post" => repeat(n, service_fn(support::ok), post_without_key).await,
        "timeout/tower" => {
            let layer = tower::timeout::TimeoutLayer::new(Duration::from_secs(15));
            repeat(n, layer.layer(service_fn(support::ok)), get).await
        }
        "timeout/tower+handle_error" => {
            let layer = tower::timeout::TimeoutLayer::new(Duration::from_secs(15));
            let stacked = support::handle_error(layer.layer(service_fn(support::ok)));
            repeat(n, stacked, get).await
        }
        "timeout/tower-http" => {
            #[allow(deprecated)]
            let layer = tower_http::timeout::TimeoutLayer::new(Duration::from_secs(15));
            repeat(n, layer.layer(service_fn(support::ok)), get).await
        }
        "timeout/steadfast-1" => {
            let layer = RouteTimeoutLayer::new(support::timeout::table(1));
            repeat(n, layer.layer(service_fn(support::ok)), get).await
        }
        "timeout/steadfast-1-no-deadline" => {
            let table = support::timeout::table(1).without_deadline_extension();
            let layer = RouteTimeoutLayer::new(table);
            repeat(n, layer.layer(service_fn(support::ok)), get).await
        }
        "timeout/steadfast-50" => {
            let layer = RouteTimeoutLayer::new(support::timeout::table(50));
            repeat(n, layer.layer(service_fn(support::ok)), get).await
        }
        "error_handler/catch_panic" => {
            repeat(
                n,
                CatchPanicLayer::new().layer(service_fn(support::ok)),
                get,
            )
            .await
        }
        "error_handler/catch_panic+handle_error" => {
            let stacked = support::catch_panic_and_handle_error(service_fn(support::ok));
            repeat(n, stacked, get).await
        }
        "error_handler/steadfast" => {
            let layer = ErrorHandlerLayer::new();
            repeat(n, layer.layer(service_fn(support::ok)), get).await
        }
        "idempotency/pass-through" => {
            let layer = IdempotencyLayer::new(MemoryStore::new());
            repeat(n, layer.layer(service_fn(support::ok)), post_without_key).await
        }
        "idempotency/identity-layer" => {
            let layer = tower::util::MapResponseLayer::new(|res| res);
            repeat(n, layer.layer(service_fn(support::ok)), post_without_key).await
        }
        "idempotency/tower-http-validate" => {
            let layer = tower_http::validate_request::ValidateRequestHeaderLayer::accept(
                "application/json",
            );
            repeat(n, layer.layer(service_fn(support::ok)), post_without_key).await
        }
        "retry/tower" => {
            let svc = support::retry::tower_retry(service_fn(support::retry::ok));
            repeat(n, svc, support::retry::empty).await
        }
        "retry/steadfast" => {
            let svc = support::retry::steadfast_retry().layer(service_fn(support::retry::ok));
            repeat(n, svc, support::retry::empty).await
        }
        "retry/bare" => repeat(n, service_fn(support::retry::ok), support::retry::empty).await,
        "audit/bare" => {
            repeat(n, service_fn(support::ok), || {
                support::audit::request("/login")
            })
            .await
        }
        "audit/trace-json" => {
            let trace = support::audit::json_trace_layer().layer(service_fn(support::ok));
            let _guard = tracing::dispatcher::set_default(&support::audit::json_log_dispatch());
            repeat(n, trace, || support::audit::request("/login")).await
        }
        "audit/unaudited" | "audit/one-event" => {
            let path = if variant == "audit/unaudited" {
                "/health"
            } else {
                "/login"
            };
            let auditor = Auditor::builder().build(NullSink);
            let audited = support::audit::layer(&auditor).layer(service_fn(support::ok));
            repeat(n, audited, || support::audit::request(path)).await;
            // The writer's share of each event is counted too.
            auditor.shutdown().await;
        }
        stack if stack.starts_with("stack/") => {
            let auditor = Auditor::builder().build(NullSink);
            let name = &stack["stack/".len()..];
            let Some((_, router)) = support::stack::variants(&auditor)
                .into_iter()
                .find(|(variant, _)| variant.trim_start_matches("+ ") == name)
            else {
                eprintln!("instructions: unknown stack variant {name:?}");
                std::process::exit(2);
            };
            repeat(n, router, support::stack::request).await;
            auditor.shutdown().await;
        }
        other => {
            eprintln!("instructions: unknown variant {other:?}");
            std::process::exit(2);
        }
    }
}
