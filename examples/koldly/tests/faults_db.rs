//! Reliability scenarios: koldly's PostgreSQL connections cut, refused and
//! black-holed (RELIABILITY.md, "koldly: database and providers", K1).
//!
//! koldly's pools (its own and the job engine's) reach the PostgreSQL of
//! `DATABASE_URL` through a [`FaultProxy`]. The server runs with short limits
//! so a scenario takes seconds: every route times out after
//! [`ROUTE_TIMEOUT`], a connection is waited for at most [`ACQUIRE_TIMEOUT`].
//! Real sockets, so real time: every wait is on a condition, polled and
//! bounded. Each test prints its figures on a `FIGURE` line (`--nocapture`);
//! without `DATABASE_URL` they skip with a printed reason.

mod support;

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use bytes::Bytes;
use fault_proxy::{FaultHandle, FaultProxy};
use http_body_util::Full;
use koldly::db::PoolSettings;
use steadfast::timeout::TimeoutTable;
use support::{Backend, Reply, TestServer, common::service_url, send};

/// Every route's time limit in these tests (12–30 s in production).
const ROUTE_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a request waits for a database connection (10 s in production).
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(1);
/// Requests sent at once while the database is away: more than the pool's 10
/// connections.
const BURST: usize = 20;
/// The longest any condition here may take to come true.
const BOUND: Duration = Duration::from_secs(30);
/// What a request may take past its route timeout (scheduling on a loaded
/// 2-core machine).
const SLACK: Duration = Duration::from_millis(1500);

struct Rig {
    server: TestServer,
    faults: FaultHandle,
    token: String,
    _proxy: FaultProxy,
}

/// koldly on a fresh PostgreSQL database reached through a fault proxy, with
/// a signed-up user; `None` (skipped, reason printed) without `DATABASE_URL`.
async fn rig() -> Option<Rig> {
    let admin = url::Url::parse(&service_url("DATABASE_URL")?).expect("DATABASE_URL is a URL");
    let host = admin
        .host_str()
        .expect("DATABASE_URL has a host")
        .to_owned();
    let port = admin.port().unwrap_or(5432);
    let upstream: SocketAddr = tokio::net::lookup_host((host.as_str(), port))
        .await
        .expect("resolve DATABASE_URL")
        .find(|a| a.ip().is_loopback())
        .expect("the test PostgreSQL is on loopback");
    let proxy = FaultProxy::start(upstream).await.expect("fault proxy");
    let proxy_addr = proxy.addr();
    let server = TestServer::start(Backend::Postgres, |config| {
        let mut url = url::Url::parse(&config.database_url).unwrap();
        url.set_host(Some(&proxy_addr.ip().to_string())).unwrap();
        url.set_port(Some(proxy_addr.port())).unwrap();
        config.database_url = url.to_string();
        config.route_timeouts = TimeoutTable::new(ROUTE_TIMEOUT);
        config.db_pool = PoolSettings {
            acquire_timeout: ACQUIRE_TIMEOUT,
            ..PoolSettings::default()
        };
    })
    .await;
    let (token, _) = server
        .signup("faults@example.com", "correct horse battery 9")
        .await;
    Some(Rig {
        server,
        faults: proxy.handle(),
        token,
        _proxy: proxy,
    })
}

/// A database-backed route: the session's user is read, then the campaigns.
async fn list_campaigns(addr: SocketAddr, token: &str) -> Reply {
    send(
        http::Request::get(format!("http://{addr}/api/campaigns"))
            .header("authorization", format!("Bearer {token}"))
            .body(Full::new(Bytes::new()))
            .unwrap(),
    )
    .await
}

async fn health_db(addr: SocketAddr) -> Reply {
    support::get(addr, "/health?check=db").await
}

/// What a burst of requests came to.
#[derive(Debug, Default)]
struct Burst {
    ok: usize,
    unavailable: usize,
    timed_out: usize,
    other: Vec<u16>,
    slowest: Duration,
}

/// Sends [`BURST`] requests at once and sorts their answers; every failure
/// must be a problem document, a 503 with `Retry-After`.
async fn burst(rig: &Rig) -> Burst {
    let tasks: Vec<_> = (0..BURST)
        .map(|_| {
            let (addr, token) = (rig.server.addr, rig.token.clone());
            tokio::spawn(async move {
                let started = Instant::now();
                let reply = list_campaigns(addr, &token).await;
                (reply, started.elapsed())
            })
        })
        .collect();
    let mut out = Burst::default();
    for task in tasks {
        let (reply, took) = task.await.unwrap();
        out.slowest = out.slowest.max(took);
        match reply.status.as_u16() {
            200 => out.ok += 1,
            503 => {
                reply.assert_problem(503);
                assert!(
                    reply.headers.contains_key(http::header::RETRY_AFTER),
                    "a 503 says when to come back"
                );
                out.unavailable += 1;
            }
            504 => {
                reply.assert_problem(504);
                out.timed_out += 1;
            }
            other => out.other.push(other),
        }
    }
    out
}

/// Polls until a request succeeds; returns how long that took.
async fn time_to_recover(rig: &Rig) -> Duration {
    let started = Instant::now();
    loop {
        if list_campaigns(rig.server.addr, &rig.token).await.status == 200 {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < BOUND,
            "koldly did not recover within {BOUND:?} of the database coming back"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// After recovery the pool has its full capacity again: a burst of more
/// requests than connections all succeed (a connection leaked by the fault
/// would show as 503s here).
async fn assert_whole_again(rig: &Rig) -> Duration {
    let after = burst(rig).await;
    assert_eq!(
        (after.ok, after.unavailable, after.timed_out, &after.other),
        (BURST, 0, 0, &vec![]),
        "every request succeeds once the database is back"
    );
    let health = health_db(rig.server.addr).await;
    assert_eq!(
        health.status, 200,
        "the health check reports the database up"
    );
    after.slowest
}

/// The fault checks common to the variants that take the database away: the
/// burst fails fast with 503s, the health check says 503, and nothing hangs
/// past its route timeout.
async fn assert_failing_fast(rig: &Rig, during: &Burst, bound: Duration) {
    assert_eq!(during.ok, 0, "no request succeeds without a database");
    assert!(during.other.is_empty(), "only 503/504: {:?}", during.other);
    assert!(
        during.slowest <= bound,
        "slowest request {:?} exceeds {bound:?}",
        during.slowest
    );
    let started = Instant::now();
    let health = health_db(rig.server.addr).await;
    health.assert_problem(503);
    assert!(started.elapsed() <= koldly::health::DB_CHECK_TIMEOUT + SLACK);
}

fn ms(d: Duration) -> u128 {
    d.as_millis()
}

/// PostgreSQL gone: its port closed and every open connection reset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outage_fails_fast_and_the_pool_recovers() {
    let Some(rig) = rig().await else { return };
    assert_eq!(
        list_campaigns(rig.server.addr, &rig.token).await.status,
        200
    );

    rig.faults.outage().await.unwrap();
    let during = burst(&rig).await;
    // A refused connect is retried by the pool until its acquire timeout: the
    // answer comes by then, never near the route timeout.
    assert_failing_fast(&rig, &during, ACQUIRE_TIMEOUT + SLACK).await;
    assert_eq!(
        during.unavailable, BURST,
        "every failure is a 503: {during:?}"
    );

    rig.faults.restore().await.unwrap();
    let recovery = time_to_recover(&rig).await;
    let after_slowest = assert_whole_again(&rig).await;
    println!(
        "FIGURE koldly_pg_outage: burst {BURST}: 503 {}, slowest {} ms (acquire timeout {} ms); \
         recovered {} ms after restore; after: {BURST}/{BURST} ok, slowest {} ms",
        during.unavailable,
        ms(during.slowest),
        ms(ACQUIRE_TIMEOUT),
        ms(recovery),
        ms(after_slowest),
    );
}

/// Every open connection reset, the port still open: the pool notices on its
/// next ping of each idle connection and opens new ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_cut_cost_no_request() {
    let Some(rig) = rig().await else { return };
    // Warm the pool: more connections open than the minimum.
    assert_whole_again(&rig).await;
    let open_before = rig.faults.open_connections();
    let accepted_before = rig.faults.accepted();

    rig.faults.cut().await;
    let after = burst(&rig).await;
    assert_eq!(
        (after.ok, &after.other),
        (BURST, &vec![]),
        "the pool replaces cut connections before handing them out: {after:?}"
    );
    let reopened = rig.faults.accepted() - accepted_before;
    assert!(reopened > 0, "the cut connections were replaced");
    println!(
        "FIGURE koldly_pg_cut_idle: {open_before} connections cut; burst {BURST}: {} ok, 0 failed, \
         slowest {} ms; {reopened} connections reopened",
        after.ok,
        ms(after.slowest),
    );
}

/// New connections refused while the open ones still work: the pool serves
/// from what it has.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_connects_are_served_from_the_open_connections() {
    let Some(rig) = rig().await else { return };
    assert_whole_again(&rig).await;
    let open = rig.faults.open_connections();

    rig.faults.refuse_new().await.unwrap();
    let during = burst(&rig).await;
    assert!(during.other.is_empty(), "only 200/503/504: {during:?}");
    assert_eq!(
        during.timed_out, 0,
        "no request waits for its route timeout"
    );
    assert!(during.slowest <= ACQUIRE_TIMEOUT + SLACK);
    assert!(
        during.ok > 0,
        "the open connections keep serving: {during:?}"
    );

    // Then those connections go too: the outage of the first test.
    rig.faults.cut().await;
    let cut = burst(&rig).await;
    assert_failing_fast(&rig, &cut, ACQUIRE_TIMEOUT + SLACK).await;

    rig.faults.restore().await.unwrap();
    let recovery = time_to_recover(&rig).await;
    assert_whole_again(&rig).await;
    println!(
        "FIGURE koldly_pg_refuse_new: {open} connections open; burst {BURST} with connects refused: \
         {} ok, {} 503, slowest {} ms; then cut: {} 503, slowest {} ms; recovered {} ms after restore",
        during.ok,
        during.unavailable,
        ms(during.slowest),
        cut.unavailable,
        ms(cut.slowest),
        ms(recovery),
    );
}

/// Every byte swallowed, connections left open and silent: nothing fails,
/// everything waits. A request must still end by its route timeout. Here the
/// pool's connections are idle when the hole opens: the pool's ping of each
/// one hangs, so every request ends at the acquire timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn black_holed_database_ends_every_request_by_its_timeout() {
    let Some(rig) = rig().await else { return };
    assert_whole_again(&rig).await;

    rig.faults.black_hole();
    let during = burst(&rig).await;
    assert_failing_fast(&rig, &during, ROUTE_TIMEOUT + SLACK).await;

    // The network heals. No connection is reset: the ones whose bytes
    // vanished must be noticed and replaced by koldly's pool.
    rig.faults.restore().await.unwrap();
    let recovery = time_to_recover(&rig).await;
    assert_whole_again(&rig).await;
    println!(
        "FIGURE koldly_pg_black_hole_idle: burst {BURST}: 503 {}, 504 {}, slowest {} ms (route timeout {} ms); \
         recovered {} ms after restore; after: {BURST}/{BURST} ok",
        during.unavailable,
        during.timed_out,
        ms(during.slowest),
        ms(ROUTE_TIMEOUT),
        ms(recovery),
    );
}

/// The hole opens while queries are in flight (every chunk delayed 300 ms, so
/// each query is on the wire when the hole opens 400 ms into the burst): those
/// requests end at their route timeout, the others at the acquire timeout.
/// Their connections were cancelled mid-query; once the network heals, the
/// pool must not have lost them for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn black_hole_mid_query_ends_by_the_route_timeout_and_the_pool_recovers() {
    let Some(rig) = rig().await else { return };
    assert_whole_again(&rig).await;

    rig.faults.set_latency(Duration::from_millis(300));
    let in_flight = tokio::spawn({
        let (addr, token) = (rig.server.addr, rig.token.clone());
        async move {
            let tasks: Vec<_> = (0..BURST)
                .map(|_| {
                    let token = token.clone();
                    tokio::spawn(async move {
                        let started = Instant::now();
                        (
                            list_campaigns(addr, &token).await.status.as_u16(),
                            started.elapsed(),
                        )
                    })
                })
                .collect();
            let mut out = Vec::new();
            for task in tasks {
                out.push(task.await.unwrap());
            }
            out
        }
    });
    // The moment of the fault, not a wait for a result.
    tokio::time::sleep(Duration::from_millis(400)).await;
    rig.faults.black_hole();
    let answers = in_flight.await.unwrap();
    let slowest = answers.iter().map(|(_, took)| *took).max().unwrap();
    let timed_out = answers.iter().filter(|(status, _)| *status == 504).count();
    let unavailable = answers.iter().filter(|(status, _)| *status == 503).count();
    assert!(
        answers
            .iter()
            .all(|(status, _)| matches!(status, 200 | 503 | 504)),
        "{answers:?}"
    );
    assert!(slowest <= ROUTE_TIMEOUT + SLACK, "slowest {slowest:?}");
    assert!(timed_out > 0, "some queries were in flight: {answers:?}");

    rig.faults.restore().await.unwrap();
    let recovery = time_to_recover(&rig).await;
    let whole = Instant::now();
    loop {
        let after = burst(&rig).await;
        if after.ok == BURST {
            break;
        }
        assert!(
            whole.elapsed() < BOUND,
            "the pool never got its capacity back: {after:?}"
        );
    }
    let capacity_back = recovery + whole.elapsed();
    assert_whole_again(&rig).await;
    println!(
        "FIGURE koldly_pg_black_hole_mid_query: burst {BURST}: 504 {timed_out}, 503 {unavailable}, \
         ok {}, slowest {} ms (route timeout {} ms); first success {} ms after restore, \
         full capacity {} ms after restore",
        BURST - timed_out - unavailable,
        ms(slowest),
        ms(ROUTE_TIMEOUT),
        ms(recovery),
        ms(capacity_back),
    );
}
