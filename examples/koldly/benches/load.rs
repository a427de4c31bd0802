//! Load test: koldly's full middleware stack against a bare axum server with the
//! same handler, same concurrency and duration, on loopback.
//!
//! `cargo bench -p koldly --bench load` (or `-- --seconds 10 --connections 32
//! --rounds 7 --log warn`); `cargo test --benches` runs it for a fraction of a
//! second, only to check that both servers answer every request. Both servers
//! run under koldly's own subscriber at `warn` unless `--log FILTER` says
//! otherwise (see [`common::install_subscriber`]).
//!
//! It prints requests/s and p50/p99 latency of both (the best round of each)
//! and the ratio of their throughput round by round; the target is that the
//! full stack keeps at least 90% of bare, judged on the median of the rounds'
//! ratios. Both servers and the load run in this one process, in rounds that
//! alternate which server goes first, so the machine's noise falls on both
//! alike. The load comes from a minimal HTTP/1.1 client (see [`load`]) that
//! costs the same whichever server answers.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use axum::{Router, routing::get};
use koldly::{App, Config, build_app};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

mod common;

struct Options {
    round: Duration,
    warm_up: Duration,
    connections: usize,
    rounds: usize,
    /// Run by `cargo test --benches`, not `cargo bench`: a short run that only
    /// checks both servers answer every request.
    smoke: bool,
}

impl Options {
    fn from_args() -> Self {
        let args: Vec<String> = std::env::args().collect();
        if !args.iter().any(|a| a == "--bench") {
            return Options {
                round: Duration::from_millis(200),
                warm_up: Duration::from_millis(50),
                connections: 4,
                rounds: 1,
                smoke: true,
            };
        }
        let mut options = Options {
            round: Duration::from_secs(2),
            warm_up: Duration::from_millis(500),
            connections: 32,
            rounds: 9,
            smoke: false,
        };
        let value = |name: &str| {
            args.iter()
                .position(|a| a == name)
                .and_then(|i| args.get(i + 1))
                .and_then(|v| v.parse().ok())
        };
        if let Some(s) = value("--seconds") {
            options.round = Duration::from_secs(s);
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

async fn serve(app: impl App) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            axum::ServiceExt::into_make_service_with_connect_info::<SocketAddr>(app),
        )
        .await
        .unwrap();
    });
    addr
}

/// `connections` keep-alive HTTP/1 connections, each sending GET `path` back to
/// back until `duration` has passed.
///
/// The client is a minimal HTTP/1.1 reader, not hyper's: hyper's client parses
/// every response header into a `HeaderMap` (an allocation for each name it does
/// not know), so koldly's one extra header, `x-request-id`, cost the load
/// generator about 1 200 more instructions per request than bare axum's answer
/// did (`stack_cost` bench, `client` mode): work of the client, charged to the
/// server it measured, on the same two cores. This reader only looks for the
/// end of the head and `content-length`, so both servers' answers cost it
/// about the same.
async fn load(addr: SocketAddr, path: &'static str, connections: usize, duration: Duration) -> Run {
    let started = Instant::now();
    let until = started + duration;
    let request = format!("GET {path} HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n").into_bytes();
    let workers: Vec<_> = (0..connections)
        .map(|_| {
            let request = request.clone();
            tokio::spawn(async move {
                let mut stream = TcpStream::connect(addr).await.unwrap();
                stream.set_nodelay(true).unwrap();
                let mut buf = vec![0u8; 16 * 1024];
                let mut latencies = Vec::with_capacity(64 * 1024);
                let mut failures = 0;
                while Instant::now() < until {
                    let sent = Instant::now();
                    if stream.write_all(&request).await.is_err() {
                        failures += 1;
                        break;
                    }
                    match read_response(&mut stream, &mut buf).await {
                        Some(true) => {
                            latencies.push(sent.elapsed().as_micros().min(u32::MAX as u128) as u32)
                        }
                        Some(false) => failures += 1,
                        None => {
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

/// Reads one response: `Some(success)`, or `None` when the connection failed
/// or the answer has no `content-length` (the servers send it for these
/// handlers; a chunked answer would be a change worth noticing).
async fn read_response(stream: &mut TcpStream, buf: &mut [u8]) -> Option<bool> {
    let mut filled = 0;
    let head = loop {
        let n = stream.read(&mut buf[filled..]).await.ok()?;
        if n == 0 {
            return None;
        }
        let from = filled.saturating_sub(3);
        filled += n;
        // `str::find` searches several bytes at a time, like hyper's httparse:
        // a byte-at-a-time scan would charge the longer answer for its length.
        if let Some(at) = ascii(&buf[from..filled]).find("\r\n\r\n") {
            break from + at + 4;
        }
        if filled == buf.len() {
            return None;
        }
    };
    let ok = buf[..head].starts_with(b"HTTP/1.1 2");
    let length: usize = ascii(&buf[..head]).split("\r\n").find_map(|line| {
        let (name, value) = line.split_once(':')?;
        if !name.eq_ignore_ascii_case("content-length") {
            return None;
        }
        value.trim().parse().ok()
    })?;
    let end = head + length;
    if end > buf.len() {
        return None;
    }
    while filled < end {
        let n = stream.read(&mut buf[filled..]).await.ok()?;
        if n == 0 {
            return None;
        }
        filled += n;
    }
    // One request at a time per connection: nothing may follow the body.
    (filled == end).then_some(ok)
}

/// The longest text at the start of `bytes` (an answer's head is ASCII).
fn ascii(bytes: &[u8]) -> &str {
    match std::str::from_utf8(bytes) {
        Ok(text) => text,
        Err(err) => std::str::from_utf8(&bytes[..err.valid_up_to()]).unwrap_or_default(),
    }
}

fn best(runs: &[Run]) -> &Run {
    runs.iter()
        .max_by(|a, b| a.rps().total_cmp(&b.rps()))
        .expect("at least one round")
}

/// Each round's ratio of full to bare throughput: the two ran back to back,
/// so a burst of noise from the machine's neighbours falls on one pair, not on
/// the whole comparison.
fn round_ratios(bare: &[Run], full: &[Run]) -> Vec<f64> {
    bare.iter()
        .zip(full)
        .map(|(b, f)| f.rps() / b.rps())
        .collect()
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    if sorted.len().is_multiple_of(2) {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    } else {
        sorted[mid]
    }
}

fn main() {
    let options = Options::from_args();
    let log = common::install_subscriber(&std::env::args().collect::<Vec<_>>());
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

        let duration = options.round;
        if options.smoke {
            println!("smoke run (cargo test --benches): it checks that both servers answer; its figures mean nothing");
        }
        // A handler that does nothing (the layers' whole cost shows) and one that
        // makes one database round trip, as most API handlers do at least.
        for path in ["/health", "/health?check=db"] {
            println!(
                "koldly load test: GET {path}, {} connections, {:?} per round, {} rounds each, alternating, --log {log}",
                options.connections, options.round, options.rounds
            );
            let warm = options.warm_up;
            load(bare_addr, path, options.connections, warm).await;
            load(full_addr, path, options.connections, warm).await;
            let (mut bare_runs, mut full_runs) = (Vec::new(), Vec::new());
            for round in 0..options.rounds {
                // Each server goes first in every other round, so neither always
                // runs in the other's wake.
                if round % 2 == 0 {
                    bare_runs.push(load(bare_addr, path, options.connections, duration).await);
                    full_runs.push(load(full_addr, path, options.connections, duration).await);
                } else {
                    full_runs.push(load(full_addr, path, options.connections, duration).await);
                    bare_runs.push(load(bare_addr, path, options.connections, duration).await);
                }
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
            let best_ratio = full.rps() / bare.rps();
            let rounds = round_ratios(&bare_runs, &full_runs);
            let ratio = median(&rounds);
            println!(
                "full stack / bare throughput, best rounds: {:.1}%; round by round: {}",
                best_ratio * 100.0,
                rounds
                    .iter()
                    .map(|r| format!("{:.1}%", r * 100.0))
                    .collect::<Vec<_>>()
                    .join(" ")
            );
            println!(
                "full stack / bare throughput, median of rounds: {:.1}% (target >= 90%: {})\n",
                ratio * 100.0,
                match (options.smoke, ratio >= 0.9) {
                    (true, _) => "not judged on a smoke run",
                    (false, true) => "met",
                    (false, false) => "missed",
                }
            );
            if options.smoke {
                for (name, run) in [("bare axum", bare), ("koldly", full)] {
                    assert!(run.requests > 0, "{name} answered no request on {path}");
                    assert_eq!(run.failures, 0, "{name} failed requests on {path}");
                }
            }
        }
        handles.close().await;
        let _ = std::fs::remove_dir_all(&dir);
    });
}
