//! Hedged requests on paused time: the tail cut against a server with a slow
//! fraction (seeded), the budget, the deadline, idempotency, the loser dropped.

use std::{
    convert::Infallible,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use http::{Method, Request, Response, StatusCode};
use rand::{Rng, SeedableRng, rngs::StdRng};
use steadfast::{Deadline, hedge::HedgeLayer, retry::RetryBudget};
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt, service_fn};

const MS: Duration = Duration::from_millis(1);

/// Counts attempts that ran to completion and attempts dropped unfinished.
#[derive(Clone, Default)]
struct Attempts {
    started: Arc<AtomicUsize>,
    finished: Arc<AtomicUsize>,
    dropped: Arc<AtomicUsize>,
}

/// Counts a drop that happens before the attempt finished.
struct DropGuard {
    attempts: Attempts,
    finished: bool,
}

impl Drop for DropGuard {
    fn drop(&mut self) {
        if !self.finished {
            self.attempts.dropped.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// A server whose `n`-th call (from 0) takes `latency(n)` and answers `status(n)`.
fn server(
    attempts: Attempts,
    plan: impl Fn(usize) -> (u64, u16) + Clone + Send + Sync + 'static,
) -> impl Service<Request<()>, Response = Response<usize>, Error = Infallible, Future = impl Send>
+ Clone
+ Send {
    service_fn(move |_req: Request<()>| {
        let n = attempts.started.fetch_add(1, Ordering::SeqCst);
        let (ms, status) = plan(n);
        let attempts = attempts.clone();
        async move {
            let mut guard = DropGuard {
                attempts: attempts.clone(),
                finished: false,
            };
            tokio::time::sleep(Duration::from_millis(ms)).await;
            guard.finished = true;
            attempts.finished.fetch_add(1, Ordering::SeqCst);
            Ok(Response::builder().status(status).body(n).unwrap())
        }
    })
}

fn get() -> Request<()> {
    Request::get("http://upstream/").body(()).unwrap()
}

fn p99(latencies: &mut [Duration]) -> Duration {
    latencies.sort();
    latencies[(latencies.len() * 99).div_ceil(100) - 1]
}

/// 1 000 sequential GETs against a server where 5 % of calls (chosen by a
/// seeded generator) take a second and the rest 10 ms: the latency each caller saw.
async fn run_against_slow_fraction<S>(svc: S) -> Vec<Duration>
where
    S: Service<Request<()>, Response = Response<usize>> + Clone,
    S::Error: std::fmt::Debug,
{
    let mut latencies = Vec::new();
    for _ in 0..1000 {
        let started = Instant::now();
        let res = svc.clone().oneshot(get()).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        latencies.push(started.elapsed());
    }
    latencies
}

fn slow_fraction_plan(seed: u64) -> impl Fn(usize) -> (u64, u16) + Clone + Send + Sync + 'static {
    let rng = Arc::new(Mutex::new(StdRng::seed_from_u64(seed)));
    move |_n| {
        let slow = rng.lock().unwrap().random_bool(0.05);
        (if slow { 1000 } else { 10 }, 200)
    }
}

#[tokio::test(start_paused = true)]
async fn a_fixed_delay_cuts_p99_against_a_server_with_a_slow_fraction() {
    let without = Attempts::default();
    let mut plain = run_against_slow_fraction(server(without.clone(), slow_fraction_plan(7))).await;
    let p99_without = p99(&mut plain);

    let with = Attempts::default();
    let hedging = HedgeLayer::fixed(Duration::from_millis(30));
    let mut hedged =
        run_against_slow_fraction(hedging.layer(server(with.clone(), slow_fraction_plan(7)))).await;
    let p99_with = p99(&mut hedged);

    println!("p99 without hedging {p99_without:?}, with {p99_with:?}");
    assert_eq!(p99_without, Duration::from_millis(1000));
    assert!(p99_with <= Duration::from_millis(40), "{p99_with:?}");
    // About 5 % of requests were hedged, and the hedge won nearly each time.
    let sent = hedging.hedges_sent();
    assert!((30..=80).contains(&sent), "{sent} hedges");
    assert!(hedging.hedges_won() >= sent * 9 / 10);
    assert_eq!(with.started.load(Ordering::SeqCst) as u64, 1000 + sent);
}

#[tokio::test(start_paused = true)]
async fn a_percentile_delay_follows_the_measured_latency() {
    let attempts = Attempts::default();
    let hedging = HedgeLayer::percentile(0.9, Duration::from_millis(200));
    let mut hedged =
        run_against_slow_fraction(hedging.layer(server(attempts.clone(), slow_fraction_plan(11))))
            .await;
    let delay = hedging.current_delay();
    assert!(
        (Duration::from_millis(10)..Duration::from_millis(12)).contains(&delay),
        "p90 of the latency is 10 ms: {delay:?}"
    );
    let p99_with = p99(&mut hedged);
    assert!(p99_with <= Duration::from_millis(25), "{p99_with:?}");
}

#[tokio::test(start_paused = true)]
async fn an_empty_budget_stops_hedging() {
    let attempts = Attempts::default();
    // No reserve, and nothing earned by requests.
    let budget = RetryBudget::new(Duration::from_secs(100), 0, 0.0);
    let hedging = HedgeLayer::fixed(Duration::from_millis(30)).budget(budget);
    let svc = hedging.layer(server(attempts.clone(), |_| (1000, 200)));
    for _ in 0..3 {
        let started = Instant::now();
        svc.clone().oneshot(get()).await.unwrap();
        assert_eq!(started.elapsed(), Duration::from_secs(1), "not hedged");
    }
    assert_eq!(hedging.hedges_sent(), 0);
    assert_eq!(hedging.hedges_refused_by_budget(), 3);
    assert_eq!(attempts.started.load(Ordering::SeqCst), 3);

    // A reserve of two (1 per second over 2 s), nothing earned: two hedges, then none.
    let attempts = Attempts::default();
    let budget = RetryBudget::new(Duration::from_secs(2), 1, 0.0);
    let hedging = HedgeLayer::fixed(Duration::from_millis(30)).budget(budget.clone());
    let svc = hedging.layer(server(attempts.clone(), |_| (1000, 200)));
    let calls: Vec<_> = (0..3)
        .map(|_| tokio::spawn(svc.clone().oneshot(get())))
        .collect();
    for call in calls {
        call.await.unwrap().unwrap();
    }
    assert_eq!(hedging.hedges_sent(), 2);
    assert_eq!(hedging.hedges_refused_by_budget(), 1);
    assert_eq!(attempts.started.load(Ordering::SeqCst), 5);
    assert!(!budget.withdraw(), "the hedges spent the shared budget");
}

#[tokio::test(start_paused = true)]
async fn the_losing_attempt_is_dropped_when_the_other_answers() {
    let attempts = Attempts::default();
    let hedging = HedgeLayer::fixed(Duration::from_millis(50));
    // The first call takes a minute; the hedge 10 ms.
    let svc = hedging.layer(server(attempts.clone(), |n| {
        (if n == 0 { 60_000 } else { 10 }, 200)
    }));
    let started = Instant::now();
    let res = svc.oneshot(get()).await.unwrap();
    assert_eq!(*res.body(), 1, "the hedge's answer");
    assert_eq!(started.elapsed(), Duration::from_millis(60));
    assert_eq!(
        attempts.dropped.load(Ordering::SeqCst),
        1,
        "the first attempt was dropped"
    );
    tokio::time::sleep(Duration::from_secs(120)).await;
    assert_eq!(
        attempts.finished.load(Ordering::SeqCst),
        1,
        "and never finished"
    );

    // The other way round: the first attempt wins, the hedge is dropped.
    let attempts = Attempts::default();
    let svc = hedging.layer(server(attempts.clone(), |n| {
        (if n == 0 { 70 } else { 60_000 }, 200)
    }));
    let res = svc.oneshot(get()).await.unwrap();
    assert_eq!(*res.body(), 0);
    assert_eq!(attempts.started.load(Ordering::SeqCst), 2);
    assert_eq!(attempts.dropped.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn non_idempotent_requests_are_never_hedged_unless_they_carry_a_key() {
    let attempts = Attempts::default();
    let hedging = HedgeLayer::fixed(Duration::from_millis(30));
    let svc = hedging.layer(server(attempts.clone(), |_| (1000, 200)));
    for method in [Method::POST, Method::PATCH, Method::PUT, Method::DELETE] {
        let req = Request::builder()
            .method(method)
            .uri("http://upstream/")
            .body(())
            .unwrap();
        svc.clone().oneshot(req).await.unwrap();
    }
    assert_eq!(attempts.started.load(Ordering::SeqCst), 4);
    assert_eq!(hedging.hedges_sent(), 0);

    let keyed = Request::post("http://upstream/")
        .header("idempotency-key", "\"k1\"")
        .body(())
        .unwrap();
    svc.clone().oneshot(keyed).await.unwrap();
    assert_eq!(hedging.hedges_sent(), 1);
    assert_eq!(attempts.started.load(Ordering::SeqCst), 6);
}

#[tokio::test(start_paused = true)]
async fn no_hedge_is_sent_past_the_deadline() {
    let attempts = Attempts::default();
    let hedging = HedgeLayer::fixed(Duration::from_millis(30));
    let svc = hedging.layer(server(attempts.clone(), |_| (100, 200)));
    let mut req = get();
    Deadline::after(Duration::from_millis(30)).insert_into(req.extensions_mut());
    svc.clone().oneshot(req).await.unwrap();
    assert_eq!(
        attempts.started.load(Ordering::SeqCst),
        1,
        "the hedge would start at the deadline"
    );

    let mut req = get();
    Deadline::after(Duration::from_millis(30) + MS).insert_into(req.extensions_mut());
    svc.clone().oneshot(req).await.unwrap();
    assert_eq!(
        attempts.started.load(Ordering::SeqCst),
        3,
        "1 ms before it, it is sent"
    );
}

#[tokio::test(start_paused = true)]
async fn a_transient_failure_of_one_attempt_waits_for_the_other() {
    let attempts = Attempts::default();
    let hedging = HedgeLayer::fixed(Duration::from_millis(30));
    // The first attempt answers 200 after 200 ms; the hedge a quick 503.
    let svc = hedging.layer(server(attempts.clone(), |n| {
        if n == 0 { (200, 200) } else { (5, 503) }
    }));
    let started = Instant::now();
    let res = svc.clone().oneshot(get()).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(started.elapsed(), Duration::from_millis(200));

    // A definite answer (404) from the hedge ends the race.
    let attempts = Attempts::default();
    let svc = hedging.layer(server(attempts.clone(), |n| {
        if n == 0 { (200, 200) } else { (5, 404) }
    }));
    let started = Instant::now();
    let res = svc.clone().oneshot(get()).await.unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert_eq!(started.elapsed(), Duration::from_millis(35));

    // A first attempt failing before the delay is returned as it is, unhedged.
    let attempts = Attempts::default();
    let svc = hedging.layer(server(attempts.clone(), |_| (5, 503)));
    let res = svc.clone().oneshot(get()).await.unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(attempts.started.load(Ordering::SeqCst), 1);
}

#[test]
fn a_percentile_outside_zero_to_one_is_an_error() {
    for p in [0.0, 1.0, -0.5, f64::NAN] {
        assert!(HedgeLayer::try_percentile(p, MS).is_err(), "{p}");
    }
    assert!(HedgeLayer::try_percentile(0.95, MS).is_ok());
}
