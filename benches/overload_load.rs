//! Goodput at three times capacity, in virtual time: a handler of known cost
//! (8 workers, 10 ms of work each: 800 requests per second) behind a 200 ms
//! route timeout, offered 2 400 requests per second (Poisson arrivals from a
//! seeded generator) for 30 virtual seconds, measured after a 2 s warm-up.
//! Three variants: no protection, tower's `LoadShed` + `ConcurrencyLimit(8)`
//! (a static limit, set to the true capacity, which a real service rarely
//! knows), and steadfast's `OverloadLayer` (adaptive from its default initial limit of
//! 20, latency target 50 ms), with its default queue of 100 and with 10. Prints goodput (answers of 200 per second, as
//! a share of capacity), the p99 latency of admitted requests (all answers
//! but the layer's refusals), and the counts.
//!
//! ```sh
//! cargo bench -p steadfast --bench overload_load            # 30 virtual seconds per variant
//! cargo test -p steadfast --bench overload_load             # 3 virtual seconds, as CI runs it
//! ```
//!
//! Virtual time (tokio's paused clock) makes the figures exact and repeatable:
//! the same seed gives the same numbers on any machine.

use std::{
    convert::Infallible,
    sync::{Arc, Mutex},
    time::Duration,
};

use http::{Request, Response, StatusCode};
use rand::{Rng, SeedableRng, rngs::StdRng};
use steadfast::{
    BoxError,
    overload::{OverloadConfig, OverloadLayer},
    timeout::{RouteTimeoutLayer, TimeoutTable},
};
use tokio::{sync::Semaphore, time::Instant};
use tower::{Layer, Service, ServiceBuilder, ServiceExt, service_fn};

const WORKERS: usize = 8;
const WORK: Duration = Duration::from_millis(10);
const CAPACITY_PER_SECOND: f64 = WORKERS as f64 / 0.010;
const OFFERED_PER_SECOND: f64 = 3.0 * CAPACITY_PER_SECOND;
const ROUTE_TIMEOUT: Duration = Duration::from_millis(200);
const WARM_UP: Duration = Duration::from_secs(2);

/// The handler: waits for one of 8 workers (FIFO), then works 10 ms.
fn handler()
-> impl Service<Request<()>, Response = Response<String>, Error = Infallible, Future = impl Send>
+ Clone
+ Send
+ 'static {
    let workers = Arc::new(Semaphore::new(WORKERS));
    service_fn(move |_req: Request<()>| {
        let workers = workers.clone();
        async move {
            let _worker = workers.acquire().await.unwrap();
            tokio::time::sleep(WORK).await;
            Ok::<_, Infallible>(Response::new(String::new()))
        }
    })
}

#[derive(Default)]
struct Tally {
    ok: u64,
    refused: u64,
    timed_out: u64,
    shed: u64,
    admitted_latencies: Vec<Duration>,
}

async fn drive<S, B>(svc: S, run_for: Duration) -> Tally
where
    S: Service<Request<()>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Into<BoxError>,
    B: Send + 'static,
{
    let tally = Arc::new(Mutex::new(Tally::default()));
    let mut rng = StdRng::seed_from_u64(21);
    let start = Instant::now();
    let measure_from = start + WARM_UP;
    let end = start + run_for;
    let mut next = start;
    let mut tasks = Vec::new();
    while next < end {
        tokio::time::sleep_until(next).await;
        let svc = svc.clone();
        let tally = tally.clone();
        tasks.push(tokio::spawn(async move {
            let sent = Instant::now();
            let result = svc.oneshot(Request::new(())).await;
            if sent < measure_from {
                return;
            }
            let latency = sent.elapsed();
            let mut t = tally.lock().unwrap();
            match result.map(|res| res.status()) {
                Ok(StatusCode::OK) => {
                    t.ok += 1;
                    t.admitted_latencies.push(latency);
                }
                Ok(StatusCode::SERVICE_UNAVAILABLE) => t.refused += 1,
                Ok(StatusCode::GATEWAY_TIMEOUT) => {
                    t.timed_out += 1;
                    t.admitted_latencies.push(latency);
                }
                Ok(other) => panic!("unexpected {other}"),
                Err(_) => t.shed += 1,
            }
        }));
        // Exponential inter-arrival times: a Poisson process.
        let gap = -(1.0 - rng.random::<f64>()).ln() / OFFERED_PER_SECOND;
        next += Duration::from_secs_f64(gap);
    }
    for task in tasks {
        task.await.unwrap();
    }
    Arc::try_unwrap(tally).ok().unwrap().into_inner().unwrap()
}

fn report(name: &str, mut t: Tally, measured: Duration) {
    t.admitted_latencies.sort();
    let p99 = t
        .admitted_latencies
        .get(
            (t.admitted_latencies.len() * 99)
                .div_ceil(100)
                .saturating_sub(1),
        )
        .copied()
        .unwrap_or_default();
    let goodput = t.ok as f64 / measured.as_secs_f64();
    println!(
        "| {name} | {:.0} /s | **{:.1} %** | {:.1} ms | {} | {} | {} | {} |",
        goodput,
        100.0 * goodput / CAPACITY_PER_SECOND,
        p99.as_secs_f64() * 1e3,
        t.ok,
        t.refused + t.shed,
        t.timed_out,
        t.admitted_latencies.len(),
    );
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let run_for = if full {
        Duration::from_secs(32)
    } else {
        Duration::from_secs(3)
    };
    let measured = run_for - WARM_UP;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    let timeouts = || RouteTimeoutLayer::new(TimeoutTable::new(ROUTE_TIMEOUT));
    println!(
        "offered {OFFERED_PER_SECOND:.0}/s to a capacity of {CAPACITY_PER_SECOND:.0}/s, route timeout {} ms, {} virtual s measured",
        ROUTE_TIMEOUT.as_millis(),
        measured.as_secs()
    );
    println!(
        "| variant | goodput | of capacity | p99 admitted | 200s | refused or shed | timed out (504) | admitted |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    rt.block_on(async {
        let bare = timeouts().layer(handler());
        report("no protection", drive(bare, run_for).await, measured);

        let tower = ServiceBuilder::new()
            .layer(timeouts())
            .map_err(Into::<BoxError>::into)
            .load_shed()
            .concurrency_limit(WORKERS)
            .service(handler());
        report(
            "tower `LoadShed` + `ConcurrencyLimit(8)`",
            drive(tower, run_for).await,
            measured,
        );

        for (name, max_queue) in [
            ("steadfast `OverloadLayer`, default queue (100)", 100),
            ("steadfast `OverloadLayer`, queue of 10", 10),
        ] {
            let overload = OverloadLayer::new(
                OverloadConfig::new()
                    .latency_target(Duration::from_millis(50))
                    .max_queue(max_queue),
            );
            let steadfast = ServiceBuilder::new()
                .layer(timeouts())
                .layer(overload.clone())
                .service(handler());
            report(name, drive(steadfast, run_for).await, measured);
            println!(
                "  (final limit {}, refused past deadline {}, refused with a full queue {})",
                overload.limit(),
                overload.refused_past_deadline(),
                overload.refused_queue_full()
            );
        }
    });
}
