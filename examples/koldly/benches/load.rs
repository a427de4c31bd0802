//! Load test: koldly's full middleware stack against a bare axum server with the
//! same handler, same concurrency and duration, on loopback.
//!
//! `cargo bench -p koldly --bench load` (or `-- --seconds 10 --connections 32`).
//! It prints requests/s and p50/p99 latency of both and the ratio of their
//! throughput; the target is that the full stack keeps at least 90% of bare.
//! Both servers and the load run in this one process, alternating rounds, so
//! the machine's noise falls on both alike.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use axum::{Router, routing::get};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use koldly::{Config, build_app};
use tokio::net::{TcpListener, TcpStream};

struct Options {
    seconds: u64,
    connections: usize,
    rounds: usize,
}

impl Options {
    fn from_args() -> Self {
        let mut options = Options {
            seconds: 5,
            connections: 32,
            rounds: 2,
        };
        let args: Vec<String> = std::env::args().collect();
        let value = |name: &str| {
            args.iter()
                .position(|a| a == name)
                .and_then(|i| args.get(i + 1))
                .and_then(|v| v.parse().ok())
        };
        if let Some(s) = value("--seconds") {
            options.seconds = s;
        }
        if let Some(c) = value("--connections") {
            options.connections = c as usize;
        }
        if let Some(r) = value("--rounds") {
            options.rounds = r as usize;
        }
        options
    }
}

/// What one run measured.
struct Run {
    requests: usize,
    elapsed: Duration,
    latencies_us: Vec<u32>,
    failures: usize,
}

impl Run {
    fn rps(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }

    fn percentile(&self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return 0.0;
        }
        let i = ((self.latencies_us.len() - 1) as f64 * p).round() as usize;
        f64::from(self.latencies_us[i]) / 1000.0
    }
}

async fn serve(router: Router) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    addr
}

/// `connections` keep-alive HTTP/1 connections, each sending GET `path` back to
/// back until `duration` has passed.
async fn load(addr: SocketAddr, path: &'static str, connections: usize, duration: Duration) -> Run {
    let started = Instant::now();
    let until = started + duration;
    let workers: Vec<_> = (0..connections)
        .map(|_| {
            tokio::spawn(async move {
                let stream = TcpStream::connect(addr).await.unwrap();
                stream.set_nodelay(true).unwrap();
                let (mut sender, conn) =
                    hyper::client::conn::http1::handshake(TokioIo::new(stream))
                        .await
                        .unwrap();
                tokio::spawn(conn);
                let mut latencies = Vec::with_capacity(64 * 1024);
                let mut failures = 0;
                while Instant::now() < until {
                    let req = http::Request::get(path)
                        .header("host", "127.0.0.1")
                        .body(Empty::<Bytes>::new())
                        .unwrap();
                    let sent = Instant::now();
                    match sender.send_request(req).await {
                        Ok(res) => {
                            let ok = res.status().is_success();
                            let _ = res.into_body().collect().await;
                            if ok {
                                latencies
                                    .push(sent.elapsed().as_micros().min(u32::MAX as u128) as u32);
                            } else {
                                failures += 1;
                            }
                        }
                        Err(_) => {
                            failures += 1;
                            break;
                        }
                    }
                }
                (latencies, failures)
            })
        })
        .collect();
    let mut latencies_us = Vec::new();
    let mut failures = 0;
    for worker in workers {
        let (l, f) = worker.await.unwrap();
        latencies_us.extend(l);
        failures += f;
    }
    let elapsed = started.elapsed();
    latencies_us.sort_unstable();
    Run {
        requests: latencies_us.len(),
        elapsed,
        latencies_us,
        failures,
    }
}

fn best(runs: &[Run]) -> &Run {
    runs.iter()
        .max_by(|a, b| a.rps().total_cmp(&b.rps()))
        .expect("at least one round")
}

fn main() {
    let options = Options::from_args();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = std::env::temp_dir().join(format!("koldly-load-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let config = Config::development(format!("sqlite://{}/koldly.db?mode=rwc", dir.display()));
        let (full, handles) = build_app(config).await.expect("koldly starts");
        let bare = Router::new()
            .route("/health", get(koldly::health::health))
            .with_state(handles.state.clone());
        let full_addr = serve(full).await;
        let bare_addr = serve(bare).await;

        let duration = Duration::from_secs(options.seconds);
        // A handler that does nothing (the layers' whole cost shows) and one that
        // makes one database round trip, as most API handlers do at least.
        for path in ["/health", "/health?check=db"] {
            println!(
                "koldly load test: GET {path}, {} connections, {} s per round, {} rounds each, alternating",
                options.connections, options.seconds, options.rounds
            );
            let warm = Duration::from_millis(500);
            load(bare_addr, path, options.connections, warm).await;
            load(full_addr, path, options.connections, warm).await;
            let (mut bare_runs, mut full_runs) = (Vec::new(), Vec::new());
            for _ in 0..options.rounds {
                bare_runs.push(load(bare_addr, path, options.connections, duration).await);
                full_runs.push(load(full_addr, path, options.connections, duration).await);
            }
            let (bare, full) = (best(&bare_runs), best(&full_runs));
            println!(
                "{:<22} {:>12} {:>10} {:>10} {:>9}",
                "server", "requests/s", "p50 ms", "p99 ms", "failures"
            );
            for (name, run) in [("bare axum", bare), ("koldly full stack", full)] {
                println!(
                    "{:<22} {:>12.0} {:>10.3} {:>10.3} {:>9}",
                    name,
                    run.rps(),
                    run.percentile(0.50),
                    run.percentile(0.99),
                    run.failures
                );
            }
            let ratio = full.rps() / bare.rps();
            println!(
                "full stack / bare throughput: {:.1}% (target >= 90%: {})\n",
                ratio * 100.0,
                if ratio >= 0.9 { "met" } else { "missed" }
            );
        }
        handles.close().await;
        let _ = std::fs::remove_dir_all(&dir);
    });
}
