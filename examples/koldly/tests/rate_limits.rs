//! Login (5 per 15 minutes) and forgot-password (3 per hour) limits per client
//! (an IPv4 address or an IPv6 /64, behind configured proxies only), GCRA in
//! memory or shared through Redis, on the server's injectable clock: no
//! waiting.

mod support;

use std::time::Duration;

use koldly::clock::Clock;
use steadfast::audit::IpRange;
use support::{Backend, Reply, TestServer};

/// A failed login (an unknown account) from `client` as the X-Forwarded-For
/// a proxy on loopback would add.
async fn login_from(server: &TestServer, client: Option<&str>) -> Reply {
    let mut req = http::Request::post(format!("http://{}/api/auth/login", server.addr))
        .header("content-type", "application/json");
    if let Some(client) = client {
        req = req.header("x-forwarded-for", client);
    }
    support::send(
        req.body(http_body_util::Full::new(bytes::Bytes::from_static(
            br#"{"email":"nobody@example.com","password":"not a password 1"}"#,
        )))
        .unwrap(),
    )
    .await
}

fn retry_after(reply: &Reply) -> u64 {
    reply.assert_problem(429);
    reply.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// Trusting the loopback proxy the tests connect through.
fn behind_loopback_proxy(c: &mut koldly::Config) {
    c.trusted_proxies = c
        .trusted_proxies
        .clone()
        .trust("127.0.0.1".parse::<IpRange>().unwrap());
}

async fn login_and_forgot_password_limits(backend: Backend) {
    let server = TestServer::start(backend, |_| {}).await;
    server.signup("gina@example.com", "gina password 1").await;
    for _ in 0..5 {
        server
            .login("gina@example.com", "wrong password 1")
            .await
            .assert_problem(401);
    }
    // The sixth attempt is refused even with the right password.
    let limited = server.login("gina@example.com", "gina password 1").await;
    let problem = limited.assert_problem(429);
    assert_eq!(problem["type"], "https://koldly.dev/problems/rate-limited");
    let retry: u64 = limited.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=900).contains(&retry), "Retry-After {retry}");
    server.clock.advance(Duration::from_secs(15 * 60));
    assert_eq!(
        server
            .login("gina@example.com", "gina password 1")
            .await
            .status,
        200
    );

    for _ in 0..3 {
        let res = server
            .post(
                "/api/auth/forgot-password",
                r#"{"email":"gina@example.com"}"#,
            )
            .await;
        assert_eq!(res.status, 200);
    }
    let limited = server
        .post(
            "/api/auth/forgot-password",
            r#"{"email":"gina@example.com"}"#,
        )
        .await;
    limited.assert_problem(429);
    let retry: u64 = limited.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=3600).contains(&retry), "Retry-After {retry}");
    let (_, mailed) = server
        .mailed_token("gina@example.com", "password_reset")
        .await;
    assert_eq!(mailed, 3, "the refused request sent nothing");
    server.clock.advance(Duration::from_secs(3600));
    let res = server
        .post(
            "/api/auth/forgot-password",
            r#"{"email":"gina@example.com"}"#,
        )
        .await;
    assert_eq!(res.status, 200);

    let events = server.audit_events().await;
    assert_eq!(
        events
            .iter()
            .filter(|e| *e == "authn.throttled/denied")
            .count(),
        2
    );
    assert_eq!(
        events
            .iter()
            .filter(|e| *e == "authn.login.fail/failure")
            .count(),
        5
    );
    server.stop().await;
}

/// No window edge: a client that spent its budget just before the old fixed
/// window closed gets one request back a second later, not a whole new
/// budget, and `Retry-After` says exactly when the next one is accepted.
async fn no_double_burst_across_a_window_edge(backend: Backend) {
    let server = TestServer::start(backend, |_| {}).await;
    login_from(&server, None).await.assert_problem(401);
    server.clock.advance(Duration::from_secs(899));
    for _ in 0..4 {
        login_from(&server, None).await.assert_problem(401);
    }
    server.clock.advance(Duration::from_secs(1));
    login_from(&server, None).await.assert_problem(401);
    let refused = login_from(&server, None).await;
    assert_eq!(
        retry_after(&refused),
        179,
        "one every 180 s, the next in 179 s"
    );
    server.clock.advance(Duration::from_secs(178));
    assert_eq!(retry_after(&login_from(&server, None).await), 1);
    server.clock.advance(Duration::from_secs(1));
    login_from(&server, None).await.assert_problem(401);
    server.stop().await;
}

/// Behind a trusted proxy, the client is the forwarded address; an IPv6
/// client is its /64. Without a trusted proxy, a forged X-Forwarded-For buys
/// nothing.
async fn clients_are_keyed_by_address_or_ipv6_64(backend: Backend) {
    let server = TestServer::start(backend, behind_loopback_proxy).await;
    for i in 1..=5 {
        login_from(&server, Some(&format!("2001:db8:5:6::{i}")))
            .await
            .assert_problem(401);
    }
    let same_block = login_from(&server, Some("2001:db8:5:6:ffff::99")).await;
    assert_eq!(retry_after(&same_block), 180);
    login_from(&server, Some("2001:db8:5:7::1"))
        .await
        .assert_problem(401);
    login_from(&server, Some("203.0.113.7"))
        .await
        .assert_problem(401);
    server.stop().await;

    let direct = TestServer::start(backend, |_| {}).await;
    for i in 1..=5 {
        login_from(&direct, Some(&format!("198.51.100.{i}")))
            .await
            .assert_problem(401);
    }
    retry_after(&login_from(&direct, Some("198.51.100.200")).await);
    direct.stop().await;
}

/// With REDIS_URL, two instances draw on one budget per client.
async fn instances_share_one_budget_through_redis(backend: Backend) {
    let Some(redis) = support::common::service_url("REDIS_URL") else {
        return;
    };
    let shared = |c: &mut koldly::Config| {
        behind_loopback_proxy(c);
        c.redis_url = Some(redis.clone());
    };
    let a = TestServer::start(backend, shared).await;
    let b = TestServer::start(backend, shared).await;
    // Two instances of one fleet share one time: b's clock was read after
    // a's migrations (seconds on a fresh PostgreSQL database), so bring a's
    // up to it, or b's wait would be short by the difference.
    let skew = b.clock.now() - a.clock.now();
    a.clock.advance(Duration::from_secs(skew as u64));
    // A /64 of its own per run: Redis outlives the test.
    let block = uuid::Uuid::new_v4().as_u128() as u16;
    let client = |host: u16| format!("2001:db8:{block:x}:1::{host:x}");
    for i in 0..3 {
        login_from(&a, Some(&client(i))).await.assert_problem(401);
    }
    for i in 3..5 {
        login_from(&b, Some(&client(i))).await.assert_problem(401);
    }
    let refused_b = login_from(&b, Some(&client(9))).await;
    assert!((179..=181).contains(&retry_after(&refused_b)));
    retry_after(&login_from(&a, Some(&client(10))).await);
    a.stop().await;
    b.stop().await;
}

on_both!(
    login_and_forgot_password_limits,
    no_double_burst_across_a_window_edge,
    clients_are_keyed_by_address_or_ipv6_64,
    instances_share_one_budget_through_redis,
);
